"""A user's collection: the data directory, the manifest the CLI writes, adding and removing documents with
one writer at a time, and a running server that picks up every add."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from _api_support import CORPUS_DIR, REPO, running_server
from click.testing import CliRunner

from api.cli import cli
from api.settings import Settings
from corpus.collection import seed_demo, with_file_entry, without_file_entry
from corpus.ingest import load_corpus
from index import layout
from qa.collection import add_documents, documents, remove_documents

SHORTEST = min(CORPUS_DIR.glob("*.txt"), key=lambda p: p.stat().st_size)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="qa")


def note(root: Path, name: str, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text, encoding="utf-8")
    return root / name


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """(a corpus of the shortest demo file and the manifest, its index)."""
    from qa.collection import build

    root = tmp_path_factory.mktemp("collection")
    (root / "corpus").mkdir()
    for p in (CORPUS_DIR / "manifest.toml", SHORTEST):
        shutil.copy(p, root / "corpus" / p.name)
    build(root / "corpus", root / "index", progress=False)
    return root / "corpus", root / "index"


@pytest.fixture
def collection(small, tmp_path) -> tuple[Path, Path]:
    return Path(shutil.copytree(small[0], tmp_path / "corpus")), Path(shutil.copytree(small[1], tmp_path / "index"))


# --- the data directory --------------------------------------------------------------------------------------


def test_a_new_data_dir_starts_as_a_copy_of_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("QA_CORPUS_DIR", raising=False)
    monkeypatch.delenv("QA_INDEX_DIR", raising=False)
    s = Settings()
    assert s.corpus_dir == tmp_path / "data" / "collection" and s.index_dir == tmp_path / "data" / "index"
    demo = sorted(p.name for p in CORPUS_DIR.iterdir() if p.suffix in (".txt", ".toml"))
    assert sorted(p.name for p in s.corpus_dir.iterdir()) == demo
    (s.corpus_dir / SHORTEST.name).unlink()  # the user's collection is theirs: it is never re-seeded
    assert not seed_demo(s.corpus_dir) and not (s.corpus_dir / SHORTEST.name).exists()


def test_explicit_dirs_win_over_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_DATA_DIR", str(tmp_path / "data"))
    s = Settings(corpus_dir=tmp_path / "mine", index_dir=tmp_path / "idx")
    assert (s.corpus_dir, s.index_dir) == (tmp_path / "mine", tmp_path / "idx")
    assert not (tmp_path / "data").exists()


def test_collection_path_names_both_directories(tmp_path):
    result = run("collection", "path", "--corpus", str(tmp_path / "c"), "--index", str(tmp_path / "i"))
    assert result.exit_code == 0 and result.output == f"documents: {tmp_path / 'c'}\nindex: {tmp_path / 'i'}\n"


# --- the manifest the CLI writes -----------------------------------------------------------------------------


def test_a_file_entry_is_written_replaced_and_dropped_keeping_comments():
    text = (CORPUS_DIR / "manifest.toml").read_text(encoding="utf-8")
    fields = {"title": "Lisbon, 1755", "authors": ["Ana Pereira"], "year": 2001, "viewpoint_label": "seismology"}
    once = with_file_entry(text, "lisbon.md", fields, "A geologist's account")
    twice = with_file_entry(once, "lisbon.md", {"title": "Lisbon"})
    doc = tomllib.loads(twice)
    assert [f for f in doc["files"] if f["name"] == "lisbon.md"] == [{"name": "lisbon.md", "title": "Lisbon"}]
    assert doc["viewpoints"]["seismology"] == "A geologist's account"
    assert "# The corpus manifest" in twice and twice.startswith(text.split("[[files]]")[0])
    assert without_file_entry(twice, "lisbon.md").count("lisbon.md") == 0
    with pytest.raises(ValueError, match="unknown document field"):
        with_file_entry(text, "x.md", {"publisher": "X"})


def test_stated_metadata_wins_over_what_is_read(tmp_path):
    corpus = tmp_path / "c"
    note(corpus, "lisbon.md", "# The earthquake\n\nLisbon was destroyed on 1 November 1755.\n")
    fields = {"title": "Lisbon, 1755", "authors": ["Ana Pereira"], "year": 2001, "kind": "essay"}
    (corpus / "manifest.toml").write_text(with_file_entry("", "lisbon.md", fields | {"viewpoint_label": "geo"}))
    (work,) = load_corpus(corpus).works.values()
    assert (work.title, work.authors, work.year, work.kind) == ("Lisbon, 1755", ["Ana Pereira"], 2001, "essay")
    assert work.viewpoint_label == "geo" and not work.inferred


# --- adding and removing -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_add_with_metadata_then_remove(collection, tmp_path):
    corpus, index = collection
    doc = note(tmp_path / "in", "lisbon.md", "# Lisbon\n\nThe earthquake of 1 November 1755 destroyed Lisbon.\n")
    result = run(
        "collection", "add", str(doc), "--title", "Lisbon, 1755", "--author", "Ana Pereira", "--author",
        "João Silva", "--year", "2001", "--viewpoint", "seismology", "--corpus", str(corpus), "--index", str(index),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    listed = {d["file"]: d for d in json.loads(run("collection", "list", "--json", "--corpus", str(corpus),
                                                    "--index", str(index)).output)}  # fmt: skip
    assert listed["lisbon.md"]["status"] == "indexed" and listed[SHORTEST.name]["status"] == "indexed"
    (work,) = listed["lisbon.md"]["works"]
    assert (work["title"], work["authors"], work["year"]) == ("Lisbon, 1755", ["Ana Pereira", "João Silva"], 2001)
    assert work["viewpoint_label"] == "seismology"

    result = run("collection", "remove", "lisbon.md", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 0, result.stderr
    assert not (corpus / "lisbon.md").exists() and "lisbon.md" not in (corpus / "manifest.toml").read_text()
    assert [d["file"] for d in documents(corpus, index)] == [SHORTEST.name]


def test_bad_adds_and_removes_change_nothing(collection, tmp_path):
    corpus, index = collection
    before = sorted(p.name for p in corpus.iterdir())
    a, b = note(tmp_path / "a", "same.txt", "One note.\n"), note(tmp_path / "b", "same.txt", "Another note.\n")
    with pytest.raises(ValueError, match="two files named same.txt"):
        add_documents([a, b], corpus, index)
    with pytest.raises(ValueError, match="manifest"):
        add_documents([note(tmp_path / "m", "manifest.toml", "x = 1\n")], corpus, index)
    for name in ("nope.txt", "../" + SHORTEST.name, "manifest.toml"):
        with pytest.raises(ValueError, match="not a document"):
            remove_documents([name], corpus, index)
    assert sorted(p.name for p in corpus.iterdir()) == before
    result = run("collection", "remove", "nope.txt", "--corpus", str(corpus), "--index", str(index))
    assert result.exit_code == 1 and "nope.txt" in result.stderr


def qa_process(*args: str) -> subprocess.Popen:
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "api.cli", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_adds_at_once_both_land(collection, tmp_path):
    corpus, index = collection
    docs = [note(tmp_path / "in", f"note{i}.txt", f"Note {i}: the harbour of Port {i} froze in 190{i}.\n")
            for i in (1, 2)]  # fmt: skip
    procs = [qa_process("index", "add", str(d), "--corpus", str(corpus), "--index", str(index)) for d in docs]
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-2000:]
    status = {d["file"]: d["status"] for d in documents(corpus, index)}
    assert status == {SHORTEST.name: "indexed", "note1.txt": "indexed", "note2.txt": "indexed"}


def phase(name: str, corpus: Path, index: Path, doc: str, before: bytes):
    """A predicate on an add's pid: true once the add reached the phase."""
    staging = lambda pid: layout.sibling(index, "staging", pid)  # noqa: E731
    return {
        "copying": lambda pid: staging(pid).is_dir(),
        "built": lambda pid: (staging(pid) / "index" / layout.MANIFEST_FILE).exists(),
        "committed": lambda pid: (staging(pid) / layout.COMMIT_FILE).exists(),
        "file in place": lambda pid: (corpus / doc).exists(),
        "swapped": lambda pid: (index / layout.MANIFEST_FILE).read_bytes() != before,
    }[name]


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["copying", "built", "committed", "file in place", "swapped"])
def test_an_add_killed_at_any_moment_leaves_the_old_collection_or_the_new_one_whole(collection, tmp_path, moment):
    """SIGKILL at each phase of an add; then the next load finds either the collection as it was or the one with
    the document added, whole: a write killed after its commit point is finished, one killed before is undone."""
    corpus, index = collection
    doc = note(tmp_path / "in", "late.txt", "A late note about the harbour of Port Arthur in 1904.\n")
    before = (index / layout.MANIFEST_FILE).read_bytes()
    ready = phase(moment, corpus, index, doc.name, before)
    proc = qa_process("index", "add", str(doc), "--corpus", str(corpus), "--index", str(index))
    while not ready(proc.pid):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    from qa.engine import Engine

    engine = Engine.load(index, corpus)  # never stale: finished or undone
    indexed = {w.file for w in engine.works()}
    assert (doc.name in indexed) == (corpus / doc.name).exists()
    if moment in ("committed", "file in place", "swapped"):
        assert doc.name in indexed
    if moment == "copying":
        assert doc.name not in indexed
    # ("built": the commit point is milliseconds later, so a kill seen there may land on either side of it.)
    assert not layout.siblings(index, "staging") and not layout.siblings(index, "tmp")


@pytest.mark.slow
def test_a_running_server_answers_every_added_document(collection, tmp_path):
    """20 adds in a row while `qa serve` runs: each new document becomes answerable without a restart."""
    corpus, index = collection
    with running_server(index, "--corpus", str(corpus), ready_seconds=300) as srv:
        for i in range(20):
            word = f"zorblat{i:02d}"
            doc = note(tmp_path / "in", f"port{i:02d}.txt", f"The harbour master of {word} counted {i + 3} ships.\n")
            add_documents([doc], corpus, index, progress=False)
            deadline = time.monotonic() + 60
            while not answers_from(srv.url, f"How many ships did the harbour master of {word} count?", doc.name):
                assert time.monotonic() < deadline, f"add {i}: {doc.name} never became answerable"
                time.sleep(0.2)


def answers_from(url: str, question: str, file: str) -> bool:
    import urllib.request

    req = urllib.request.Request(url + "/v1/ask", json.dumps({"question": question, "top_k": 3}).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = json.loads(resp.read())
    return bool(body["passages"]) and body["passages"][0]["source"]["file"] == file


@pytest.mark.slow
def test_the_build_report_lists_skipped_files_in_the_list_and_the_api(small, tmp_path):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from qa.collection import build

    corpus = Path(shutil.copytree(small[0], tmp_path / "corpus"))
    (corpus / "scan.txt").write_bytes(b"\x00\x01" * 64)
    (corpus / "notes.rtf").write_text("{\\rtf1 notes}", encoding="utf-8")
    index = build(corpus, tmp_path / "index", progress=False)
    status = {d["file"]: d["status"] for d in documents(corpus, index)}
    assert status["scan.txt"].startswith("skipped: binary") and status["notes.rtf"].startswith("skipped: unsupported")
    assert status[SHORTEST.name] == "indexed"
    with TestClient(create_app(Settings(index_dir=index, corpus_dir=corpus))) as client:
        skipped = client.get("/v1/info").json()["skipped"]
    assert {s["file"] for s in skipped} == {"scan.txt", "notes.rtf"} and all(s["reason"] for s in skipped)
