"""Robustness: builds killed midway, damaged index files, and asking while the index is rebuilt and swapped.

Everything runs on small corpora (one or two files of the bundled corpus) so each build takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from _api_support import CORPUS_DIR, REPO, free_port, get, running_server

from index import layout

pytestmark = pytest.mark.slow

SHORTEST = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)
QUESTION = "What is Stalinism?"


def corpus_of(root: Path, *files: Path) -> Path:
    out = root
    out.mkdir(parents=True, exist_ok=True)
    for p in (CORPUS_DIR / "manifest.toml", *files):
        shutil.copy(p, out / p.name)
    return out


def qa(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "api.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def build(corpus: Path, index: Path) -> None:
    out = qa("index", "build", "--corpus", str(corpus), "--index", str(index))
    assert out.returncode == 0, out.stderr[-3000:]


def ask_in_process(index: Path, corpus: Path | None) -> dict:
    from qa.engine import Engine
    from qa.schema import AskRequest

    engine = Engine.load(index, corpus)
    return json.loads(engine.ask(AskRequest(question=QUESTION, top_k=5)).model_dump_json())


def files_of(index: Path) -> dict[str, str]:
    return {p.relative_to(index).as_posix(): layout.sha256_file(p) for p in sorted(index.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus with the shortest file, index built from it by `qa index build`)."""
    root = tmp_path_factory.mktemp("small")
    corpus = corpus_of(root / "corpus", SHORTEST[0])
    build(corpus, root / "index")
    return corpus, root / "index"


def kill_when(cmd: list[str], ready, timeout: float = 600) -> int:
    """Run `qa CMD`, SIGKILL it as soon as ready() is true; returns the pid it had."""
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", *cmd],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + timeout
    try:
        while not ready(proc.pid):
            assert proc.poll() is None, f"qa {' '.join(cmd)} finished before it could be killed"
            assert time.time() < deadline, "the build never reached the point to kill it at"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid


def tmp_dir(index: Path, pid: int) -> Path:
    return layout.sibling(index, "tmp", pid)


def staging_dir(index: Path, pid: int) -> Path:
    """Where `qa index add` copies the corpus and builds, before anything of the collection changes."""
    return layout.sibling(index, "staging", pid)


# --- (a) crash safety -----------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["dense index written"])
def test_build_killed_midway_keeps_previous_index(small, tmp_path, moment):
    corpus, built = small
    index = Path(shutil.copytree(built, tmp_path / "index"))
    before = files_of(index)
    other = corpus_of(tmp_path / "other", SHORTEST[1])
    marker = (lambda pid: tmp_dir(index, pid).is_dir()) if moment == "tmp dir appears" else None
    if marker is None:
        marker = lambda pid: (tmp_dir(index, pid) / layout.DENSE_FILE).is_file()  # noqa: E731
    pid = kill_when(["index", "build", "--corpus", str(other), "--index", str(index)], marker)
    assert tmp_dir(index, pid).exists()  # the debris a SIGKILL leaves
    assert files_of(index) == before
    answer = ask_in_process(index, corpus)  # loading tidies the dead build's tmp dir
    assert answer["passages"] and {p["source"]["file"] for p in answer["passages"]} == {SHORTEST[0].name}
    assert not tmp_dir(index, pid).exists()


def test_index_add_killed_midway_keeps_previous_index(small, tmp_path):
    corpus, built = small
    corpus = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    index = Path(shutil.copytree(built, tmp_path / "index"))
    before = files_of(index)
    new = tmp_path / "notes.txt"
    new.write_text("Notes on the Five-Year Plans.\n\nThe first Five-Year Plan began in 1928.\n", encoding="utf-8")
    pid = kill_when(
        ["index", "add", str(new), "--corpus", str(corpus), "--index", str(index)],
        lambda pid: staging_dir(index, pid).is_dir(),
    )
    assert files_of(index) == before and not (corpus / new.name).exists()
    answer = ask_in_process(index, corpus)  # the previous collection, whole
    assert answer["passages"] and all(p["source"]["file"] == SHORTEST[0].name for p in answer["passages"])
    assert not staging_dir(index, pid).exists()  # loading tidies the dead add's copy of the corpus


def test_serve_answers_after_a_killed_index_add(small, tmp_path):
    corpus, built = small
    corpus = Path(shutil.copytree(corpus, tmp_path / "corpus"))
    index = Path(shutil.copytree(built, tmp_path / "index"))
    new = tmp_path / "notes.txt"
    new.write_text("Notes on the Five-Year Plans.\n\nThe first Five-Year Plan began in 1928.\n", encoding="utf-8")
    kill_when(
        ["index", "add", str(new), "--corpus", str(corpus), "--index", str(index)],
        lambda pid: staging_dir(index, pid).is_dir(),
    )
    ask_in_process(index, corpus)


# --- a killed build leaves no process behind ------------------------------------------------------------


def proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command name, state) of every process, from /proc/PID/stat."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, _, rest = stat.read_text().rpartition(")")
        except OSError:  # it exited meanwhile
            continue
        pid, comm = head.split(" (", 1)
        state, ppid = rest.split()[:2]
        table[int(pid)] = (int(ppid), comm, state)
    return table


def descendants(root: int, table: dict[int, tuple[int, str, str]]) -> set[int]:
    found, todo = set(), [root]
    while todo:
        parent = todo.pop()
        kids = {pid for pid, (ppid, _, _) in table.items() if ppid == parent} - found
        found |= kids
        todo += kids
    return found


def alive(pids: set[int]) -> set[int]:
    table = proc_table()
    return {pid for pid in pids if pid in table and table[pid][2] != "Z"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    "command,how", [("build", "SIGKILL"), ("build", "SIGTERM"), ("build", "Ctrl-C"), ("add", "SIGKILL")]
)
def test_a_killed_build_leaves_no_process_behind(tmp_path, command, how):
    # The whole bundled corpus: parsing it takes far longer than the few seconds allowed below, so a parse
    # process that outlived its build would still be there.
    corpus = corpus_of(tmp_path / "corpus", *SHORTEST)
    note = tmp_path / "note.txt"
    note.write_text("The first Five-Year Plan began in 1928.\n", encoding="utf-8")
    args = ["index", "build"] if command == "build" else ["index", "add", str(note)]
    cmd = [sys.executable, "-m", "api.cli", *args, "--corpus", str(corpus), "--index", str(tmp_path / "index")]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.DEVNULL, start_new_session=True)
    family: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while not any(proc_table()[pid][1] == "qa-parse" for pid in alive(descendants(proc.pid, proc_table()))):
            assert proc.poll() is None and time.monotonic() < deadline, "no qa-parse process appeared"
            time.sleep(0.1)
        family = descendants(proc.pid, proc_table())
        if how == "Ctrl-C":
            os.killpg(proc.pid, signal.SIGINT)  # a terminal sends it to the whole foreground group
        else:
            os.kill(proc.pid, getattr(signal, how))  # the build alone: its children must notice
        proc.wait(timeout=60)
        deadline = time.monotonic() + 5
        while alive(family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(family), {pid: proc_table().get(pid) for pid in alive(family)}
    finally:
        for pid in alive(family | {proc.pid}):
            os.kill(pid, signal.SIGKILL)


# --- (b) damaged index files: `qa serve` refuses with one line ------------------------------------------


def _truncate(rel: str):
    def damage(index: Path) -> None:
        f = index / rel
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])

    return damage


def _edit_passages(index: Path) -> None:
    f = index / "passages.jsonl"
    f.write_text(f.read_text(encoding="utf-8").replace("Stalin", "Stalim", 1), encoding="utf-8")


def _drop_passages(index: Path) -> None:
    f = index / "passages.jsonl"
    f.write_text("", encoding="utf-8")


def _manifest(edit):
    def damage(index: Path) -> None:
        f = index / "manifest.json"
        m = json.loads(f.read_text(encoding="utf-8"))
        edit(m)
        f.write_text(json.dumps(m), encoding="utf-8")

    return damage


def _empty_index_claim(m: dict) -> None:
    # A manifest that claims an empty index and checks no file: must not serve an empty index (the file list
    # is required and may not be empty: the schema refuses it, naming the field).
    m["passage_count"], m["files"] = 0, {}


DAMAGE = {
    "dense.faiss truncated": (_truncate("dense.faiss"), "dense.faiss"),
    "passages.jsonl altered": (_edit_passages, "passages.jsonl"),
    "passages.jsonl emptied": (_drop_passages, "passages.jsonl"),
    "manifest.json truncated": (_truncate("manifest.json"), "manifest.json"),
    "manifest.json emptied": (lambda p: (p / "manifest.json").write_bytes(b""), "manifest.json"),
    "manifest.json claims no passages": (_manifest(_empty_index_claim), "field 'files'"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_serve_refuses_a_damaged_index_with_one_line(small, tmp_path, case):
    corpus, built = small
    index = Path(shutil.copytree(built, tmp_path / "index"))
    damage, says = DAMAGE[case]
    damage(index)
    out = qa("serve", "--port", str(free_port()), "--index", str(index), "--corpus", str(corpus), timeout=180)
    assert out.returncode != 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, out.stderr
    assert says in errors[0] and "qa index build" in errors[0], errors[0]


def test_serve_refuses_a_damaged_onnx_encoder(small, tmp_path):
    corpus, built = small
    index = Path(shutil.copytree(built, tmp_path / "index"))
    manifest = json.loads((index / "manifest.json").read_text())
    if manifest.get("encoder", {}).get("backend", "torch") == "torch":
        pytest.skip("this index encodes queries with torch (no ONNX export)")
    _truncate(manifest["encoder"]["file"])(index)
    out = qa("serve", "--port", str(free_port()), "--index", str(index), "--corpus", str(corpus), timeout=180)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error")]
    assert out.returncode != 0 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert manifest["encoder"]["file"] in errors[0]


# --- (c) asking while the index is rebuilt and swapped --------------------------------------------------


def _post(url: str, question: str) -> tuple[int, dict]:
    body = json.dumps({"question": question, "top_k": 10}).encode()
    req = urllib.request.Request(url + "/v1/ask", body, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")}


def generation_ids(index: Path) -> dict[str, str]:
    with open(index / "passages.jsonl", encoding="utf-8") as f:
        return {d["id"]: d["text"] for d in map(json.loads, f)}


def test_concurrent_asks_and_loads_while_the_index_is_rebuilt(small, tmp_path):
    """Eight threads ask a running server, and one thread loads the index again and again, while
    `qa index build` replaces the index from another corpus: no errors, every response's passages come from
    one generation (ids and texts), and every load is complete and of one generation (or refuses)."""
    from index.store import IndexLoadError, SearchIndex

    corpus_a, built = small
    index = Path(shutil.copytree(built, tmp_path / "index"))
    corpus_b = corpus_of(tmp_path / "b", SHORTEST[1])
    gen_a = generation_ids(index)
    questions = ["What is Stalinism?", "Who was Trotsky?", "What happened in 1937?", "What did Lenin write?"]
    results: list[tuple[int, dict]] = []
    loads, refused = [], []
    stop = threading.Event()

    def loader() -> None:
        while not stop.is_set():
            try:
                idx = SearchIndex.load(index)
            except IndexLoadError as exc:
                refused.append(str(exc))
                continue
            sizes = {len(idx), idx._dense.ntotal, int(idx._bm25.scores["num_docs"])}
            loads.append(({p.id: p.text for p in idx.passages}, sizes))

    with running_server(index, "--corpus", str(corpus_a)) as srv:

        def client(i: int) -> None:
            n = 0
            while not stop.is_set() and n < 400:
                results.append(_post(srv.url, questions[(i + n) % len(questions)]))
                n += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)] + [threading.Thread(target=loader)]
        for t in threads:
            t.start()
        try:
            build(corpus_b, index)
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert get(srv.url + "/readyz")[0] == 200
    gen_b = generation_ids(index)
    assert len(results) > 50
    bad = [r for r in results if r[0] != 200]
    assert not bad, bad[:3]
    assert not set(gen_a) & set(gen_b)
    for _, body in results:
        ids = {p["id"]: p["text"] for p in body["passages"]}
        gen = gen_a if set(ids) <= set(gen_a) else gen_b
        assert set(ids) <= set(gen), f"passages from two index generations: {sorted(ids)}"
        assert all(gen[i] == text for i, text in ids.items())
    assert loads
    for passages, sizes in loads:
        assert len(sizes) == 1 and passages in (gen_a, gen_b), "a load mixed two generations"
    assert all("kept changing" in r or "no index directory" in r or "incomplete" in r for r in refused), refused


def _work_ids(url: str) -> set[str]:
    status, body = get(url + "/v1/works")
    assert status == 200
    return {w["id"] for w in json.loads(body)}


def test_serve_swaps_in_the_index_that_qa_index_add_rebuilt(small, tmp_path):
    """A running `qa serve` picks up an index rebuilt by another process, without a restart or an error."""
    corpus = Path(shutil.copytree(small[0], tmp_path / "corpus"))
    index = Path(shutil.copytree(small[1], tmp_path / "index"))
    with running_server(index, "--corpus", str(corpus)) as srv:
        before = _work_ids(srv.url)
        out = qa("index", "add", str(SHORTEST[1]), "--corpus", str(corpus), "--index", str(index))
        assert out.returncode == 0, out.stderr[-2000:]
        deadline = time.monotonic() + 120
        while _work_ids(srv.url) == before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert before < _work_ids(srv.url)
        status, body = _post(srv.url, "What is Stalinism?")
        assert status == 200 and set(p["id"] for p in body["passages"]) <= set(generation_ids(index))
        assert "swapped in the rebuilt index" in Path(srv.log).read_text()


# --- IVF-PQ with exact re-ranking (index/build.py) ------------------------------------------------------


@pytest.mark.parametrize("mmap", [True, False])
def test_ivfpq_refine_loads_and_reranks_exactly(tmp_path, mmap):
    import faiss
    import numpy as np

    from index.build import make_dense
    from index.store import _read_faiss

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((40, 384)).astype(np.float32)
    vecs = centres[rng.integers(40, size=4000)] + 0.3 * rng.standard_normal((4000, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index, info = make_dense(vecs, dense_type="ivfpq_refine")
    assert info["type"] == "ivfpq_refine" and info["ivfpq"]["m"] == 48
    faiss.write_index(index, str(tmp_path / "dense.faiss"))
    dense = _read_faiss(tmp_path / "dense.faiss", {"dense": info}, mmap=mmap)
    assert dense.k_factor == info["ivfpq"]["k_factor"]
    assert faiss.extract_index_ivf(dense).nprobe == info["ivfpq"]["nprobe"]
    queries = vecs[:50] + 0.05 * rng.standard_normal((50, 384)).astype(np.float32)
    scores, ids = dense.search(queries, 10)
    exact_scores, exact_ids = faiss.IndexFlatIP(384), None
    exact_scores.add(vecs)
    _, exact_ids = exact_scores.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids, strict=True)])
    assert recall >= 0.95
    assert np.allclose(scores[:, 0], (vecs[ids[:, 0]] * queries).sum(axis=1), atol=1e-4)  # exact re-ranked scores
    assert np.allclose(dense.reconstruct(int(ids[0, 0])), vecs[ids[0, 0]])


def test_ivfpq_falls_back_to_exact_for_few_passages():
    import numpy as np

    from index.build import make_dense

    vecs = np.eye(8, 384, dtype=np.float32)
    index, info = make_dense(vecs, dense_type="ivfpq_refine")
    assert info["type"] == "flat_ip" and index.ntotal == 8
