"""Nothing lost, nothing forged (issue 16): a tampered index manifest or passage store is refused, a truncated
mapped file does not kill the process, corpus/manifest.toml edits make an index stale, ingestion says what it
skipped, near-identical notes stay apart, and long unpunctuated text is split. Corpora are tiny."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_index import CORPUS, FILE, corpus_passages

from corpus.ingest import MANIFEST_NAME, corpus_files, load_corpus
from corpus.passages import PASSAGE_MAX_WORDS
from index import layout
from index import manifest as manifest_schema
from index.store import IndexLoadError, SearchIndex, StaleIndexError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from index.build import build_index

    passages, works, files = corpus_passages()
    out = tmp_path_factory.mktemp("integrity") / "index"
    return build_index(passages, works, files, out, extra={"notes": {"a": 1}}, show_progress=False)


@pytest.fixture
def index_copy(built, tmp_path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "index"))


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """The corpus the built index quotes: the one file it was built from."""
    out = tmp_path / "corpus"
    out.mkdir()
    shutil.copy(CORPUS / FILE, out / FILE)
    return out


def read_manifest(index: Path) -> dict:
    return json.loads((index / layout.MANIFEST_FILE).read_text(encoding="utf-8"))


def write_manifest(index: Path, manifest: dict, reseal: bool = True) -> None:
    """Write the manifest back; `reseal` recomputes its checksum, as a careful forger would."""
    if reseal:
        manifest["checksum"] = manifest_schema.checksum(manifest)
    (index / layout.MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")


def refused(index: Path, says: str, **kwargs) -> str:
    with pytest.raises(IndexLoadError, match=says) as err:
        SearchIndex.load(index, **kwargs)
    assert "qa index build" in str(err.value)
    return str(err.value)


# --- the index manifest ---------------------------------------------------------------------------------------


def test_a_sound_index_loads_and_checks_its_passages(built, corpus_dir):
    index = SearchIndex.load(built, expected_files=corpus_files(corpus_dir), corpus_dir=corpus_dir)
    assert len(index) > 10


def test_one_flipped_bit_in_the_encoder_section_is_refused(index_copy):
    raw = bytearray((index_copy / layout.MANIFEST_FILE).read_bytes())
    at = raw.index(b'"backend": "', raw.index(b'"encoder"')) + len(b'"backend": "')
    raw[at] ^= 1  # "onnx-int8" -> "nnnx-int8", "torch" -> "uorch": still valid JSON
    (index_copy / layout.MANIFEST_FILE).write_bytes(bytes(raw))
    refused(index_copy, "does not match its own checksum")


def test_an_emptied_file_list_is_refused_even_resealed(index_copy):
    manifest = read_manifest(index_copy)
    manifest["files"] = {}
    write_manifest(index_copy, manifest)
    refused(index_copy, "'files'")


def test_a_file_left_out_of_the_list_is_refused(index_copy):
    manifest = read_manifest(index_copy)
    del manifest["files"][layout.PASSAGES_FILE]
    write_manifest(index_copy, manifest)
    refused(index_copy, f"does not list {layout.PASSAGES_FILE}")


def test_an_unlisted_file_in_the_index_is_refused(index_copy):
    (index_copy / "planted.json").write_text("{}", encoding="utf-8")
    refused(index_copy, "not listed in manifest.json: planted.json")


@pytest.mark.parametrize("where", ["extra", "files", "dense"])
def test_a_path_out_of_the_index_is_refused(index_copy, tmp_path, where):
    (tmp_path / "secret.json").write_text('{"stolen": true}', encoding="utf-8")
    manifest = read_manifest(index_copy)
    if where == "extra":
        manifest["extra"].append("../secret")
    elif where == "files":
        manifest["files"]["../secret.json"] = layout.sha256_file(tmp_path / "secret.json")
    else:
        manifest["dense"]["file"] = "../../etc/passwd"
    write_manifest(index_copy, manifest)
    refused(index_copy, f"field '{where}")


def test_a_link_out_of_the_index_is_refused(index_copy, tmp_path):
    outside = tmp_path / "works.json"
    shutil.move(index_copy / layout.WORKS_FILE, outside)
    (index_copy / layout.WORKS_FILE).symlink_to(outside)
    refused(index_copy, "link leading out of the index")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("passage_count", "12"),
        ("dense.file", 5),
        ("dense.hnsw", {"M": 32}),
        ("model.dim", -1),
        ("corpus_files", ["a.txt"]),
        ("encoder", None),
        ("lexical", None),  # deleted: named as missing
        ("surprise", 1),  # unknown: refused too
    ],
)
def test_a_malformed_field_is_refused_by_name(index_copy, field, value):
    manifest = read_manifest(index_copy)
    *parents, key = field.split(".")
    target = manifest
    for part in parents:
        target = target[part]
    if value is None:
        del target[key]
    else:
        target[key] = value
    write_manifest(index_copy, manifest)
    refused(index_copy, f"field '{field}")


def test_a_manifest_that_is_not_an_object_is_refused(index_copy):
    (index_copy / layout.MANIFEST_FILE).write_text("[1, 2]", encoding="utf-8")
    refused(index_copy, "format version")


def _forge_passage(index: Path) -> str:
    """Edit one passage's text and reseal everything: its file's checksum and the manifest's."""
    store = index / layout.PASSAGES_FILE
    lines = store.read_text(encoding="utf-8").splitlines()
    passage = json.loads(lines[3])
    passage["text"] = passage["text"].replace("Stalin", "Trotsky", 1)
    assert "Trotsky" in passage["text"]
    lines[3] = json.dumps(passage, ensure_ascii=False)
    store.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = read_manifest(index)
    manifest["files"][layout.PASSAGES_FILE] = layout.sha256_file(store)
    write_manifest(index, manifest)
    return passage["id"]


def test_a_forged_passage_with_forged_checksums_is_refused_against_the_corpus(index_copy, corpus_dir):
    pid = _forge_passage(index_copy)
    SearchIndex.load(index_copy)  # every checksum agrees: only the corpus can tell
    message = refused(index_copy, "does not quote", corpus_dir=corpus_dir)
    assert pid in message and FILE in message and "'Trotsky'" in message


def test_a_passage_pointing_outside_its_file_is_refused(index_copy, corpus_dir):
    store = index_copy / layout.PASSAGES_FILE
    lines = store.read_text(encoding="utf-8").splitlines()
    passage = json.loads(lines[0])
    passage["end"] = 10**9
    lines[0] = json.dumps(passage, ensure_ascii=False)
    store.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = read_manifest(index_copy)
    manifest["files"][layout.PASSAGES_FILE] = layout.sha256_file(store)
    write_manifest(index_copy, manifest)
    refused(index_copy, "not inside the file", corpus_dir=corpus_dir)


# --- memory-mapped files under a running process ----------------------------------------------------------------

TRUNCATE = """
import os, sys
from pathlib import Path
import index.store as store
from index.store import IndexLoadError, SearchIndex

index_dir, mmap_min = Path(sys.argv[1]), int(sys.argv[2])
store.MMAP_MIN_BYTES = mmap_min
index = SearchIndex.load(index_dir)
assert index.lexical_search("Kaganovich", 1)[1].size == 1
for rel in ("bm25/data.csc.index.npy", "bm25/indices.csc.index.npy", "dense.faiss"):
    os.truncate(index_dir / rel, 64)  # in place, as nothing of ours ever does
try:
    found = index.lexical_search("Kaganovich", 1)[1].size
    vectors = index.passage_vectors([0, 1])
    print("survived", found, vectors.shape)
except IndexLoadError as exc:
    print("refused:", exc)
"""


@pytest.mark.parametrize(("mmap_min", "outcome"), [(1 << 40, "survived 1 (2, "), (0, "refused: index file bm25/")])
def test_a_truncated_index_file_does_not_kill_the_process(index_copy, mmap_min, outcome):
    """A small index is read into memory and keeps answering; a mapped one refuses instead of dying (SIGBUS)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-c", TRUNCATE, str(index_copy), str(mmap_min)]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(outcome), out.stdout
    if mmap_min == 0:
        assert "changed size under the running server" in out.stdout


# --- corpus/manifest.toml is part of staleness ---------------------------------------------------------------


def test_a_manifest_toml_edit_makes_the_index_stale(index_copy, corpus_dir, tmp_path):
    shutil.copy(CORPUS / MANIFEST_NAME, corpus_dir / MANIFEST_NAME)
    before = corpus_files(corpus_dir)
    assert before[MANIFEST_NAME] == hashlib.sha256((corpus_dir / MANIFEST_NAME).read_bytes()).hexdigest()
    assert load_corpus(corpus_dir).recorded_files == before  # what a build records is what staleness compares
    toml = corpus_dir / MANIFEST_NAME
    toml.write_text(toml.read_text(encoding="utf-8").replace('title = "Stalinism"', 'title = "Relabelled"', 1))
    after = corpus_files(corpus_dir)
    assert after != before and after.keys() == before.keys()

    manifest = read_manifest(index_copy)
    manifest["corpus_files"] = before
    write_manifest(index_copy, manifest)
    SearchIndex.load(index_copy, expected_files=before)
    with pytest.raises(StaleIndexError, match=f"changed: {MANIFEST_NAME}"):
        SearchIndex.load(index_copy, expected_files=after)

    from api.serve import why_build
    from api.settings import Settings

    reason = why_build(Settings(index_dir=index_copy, corpus_dir=corpus_dir))
    assert reason and "manifest.toml" in reason


# --- ingestion says what it skipped ----------------------------------------------------------------------------

PROSE = "The committee met on a cold morning and agreed, after a long argument, to publish the whole report. "


def test_skipped_files_are_reported_one_line_each_with_a_count(tmp_path, caplog):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "good.txt").write_text(PROSE * 3, encoding="utf-8")
    (d / "empty.txt").write_text("  \n", encoding="utf-8")
    (d / "binary.txt").write_bytes(b"\x89PNG\r\n\x00\x00\x01")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (d / "README").write_text(PROSE, encoding="utf-8")
    (d / "link.txt").symlink_to("/etc/passwd")
    (d / "sub").mkdir()
    (d / ".hidden.txt").write_text(PROSE, encoding="utf-8")
    corpus = load_corpus(d)
    skipped = {s.file: s.reason for s in corpus.skipped}
    assert set(corpus.files) == {"good.txt"}
    assert skipped == {
        ".hidden.txt": "hidden file",
        "README": "unsupported format (none: no extension)",
        "binary.txt": skipped["binary.txt"],
        "empty.txt": "empty file",
        "latin1.txt": skipped["latin1.txt"],
        "link.txt": "symbolic link, not followed",
        "sub": "a folder: only the files directly in the corpus folder are read",
    }
    assert "binary" in skipped["binary.txt"] and "not UTF-8" in skipped["latin1.txt"]
    assert "passwd" not in json.dumps([p.text for p in corpus.passages])
    assert set(corpus_files(d)) == {"good.txt"}  # staleness sees the same files

    with caplog.at_level(logging.WARNING, logger="corpus.ingest"):
        corpus.log_skipped()
    lines = [r.getMessage() for r in caplog.records]
    assert "skipped link.txt: symbolic link, not followed" in lines
    assert lines[-1].startswith("skipped 7 file(s) of") and lines[-1].endswith("ingested 1")


def test_a_file_over_the_size_limit_is_refused_saying_so(tmp_path, monkeypatch):
    (tmp_path / "big.txt").write_text(PROSE * 30, encoding="utf-8")
    monkeypatch.setenv("QA_MAX_FILE_MB", "0.001")
    [skipped] = load_corpus(tmp_path).skipped
    assert "over the 0.001 MB limit" in skipped.reason and "QA_MAX_FILE_MB" in skipped.reason


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_files_with_a_byte_order_mark_are_read(tmp_path, encoding):
    text = "Über den Fluss. " + PROSE * 2
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    (tmp_path / "marked.txt").write_bytes(data)
    corpus = load_corpus(tmp_path)
    assert not corpus.skipped and corpus.passages
    raw = corpus.texts["marked.txt"]
    p = corpus.passages[0]
    assert p.text.startswith("Über den Fluss.") and raw[p.start : p.end].startswith("Über")
    from index.store import check_verbatim

    check_verbatim(corpus.passages, tmp_path, tmp_path / "index")  # the loader decodes it the same way


def test_a_passage_too_long_for_spacy_names_its_file():
    from corpus.model import Passage
    from qa.build import PARSE_MAX_CHARS, _check_parsable

    blob = Passage("x-1", "dump.txt", 0, PARSE_MAX_CHARS + 1, "x", None, "f" * (PARSE_MAX_CHARS + 1))
    with pytest.raises(ValueError, match="dump.txt: a passage"):
        _check_parsable([blob])


# --- near-duplicates and long input ----------------------------------------------------------------------------


def test_near_identical_notes_stay_apart_and_true_copies_still_collapse(tmp_path):
    for i in range(2000):
        note = f"This is note number {i} about the quarterly planning meeting for the northern office."
        (tmp_path / f"note{i:04d}.txt").write_text(note + "\n", encoding="utf-8")
    (tmp_path / "zz-copy-of-note1234.txt").write_text((tmp_path / "note1234.txt").read_text(), encoding="utf-8")
    corpus = load_corpus(tmp_path)
    by_file = {p.file: p for p in corpus.passages}
    assert len(corpus.passages) == 2000 and "zz-copy-of-note1234.txt" not in by_file
    assert "note number 1234 " in by_file["note1234.txt"].text
    assert [(s.file, s.start) for s in by_file["note1234.txt"].also_in] == [("zz-copy-of-note1234.txt", 0)]


def test_short_notes_differing_in_a_name_stay_apart(tmp_path):
    for name in ("Alice", "Bob"):
        (tmp_path / f"{name}.txt").write_text(f"Remember that {name} will present the budget on Friday.\n")
    assert len(load_corpus(tmp_path).passages) == 2


def test_long_unpunctuated_text_is_split_in_linear_time_and_nothing_is_lost(tmp_path):
    """200,000 one-word lines: capped passages, every word kept (joining lines one by one was quadratic)."""
    words = [f"w{i}" for i in range(200_000)]
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    corpus = load_corpus(tmp_path)
    sizes = [p.words for p in corpus.passages]
    assert max(sizes) <= PASSAGE_MAX_WORDS and sum(sizes) == len(words)
    assert len(corpus.passages) >= len(words) // PASSAGE_MAX_WORDS
    text = " ".join(p.text for p in corpus.passages)
    assert text.split() == words  # in order, none lost
    raw = corpus.texts["words.txt"]
    assert all(raw[p.start : p.end].split() == p.text.split() for p in corpus.passages[:50])
