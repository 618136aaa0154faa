"""Incremental builds: a rebuild takes over the vectors and parses of unchanged passages from the index it
replaces (index/reuse.py), and builds from scratch when that index is corrupt or from another model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from index import layout
from index import manifest as manifest_schema
from index.reuse import REUSE_EXTRA
from index.store import SearchIndex
from qa.build import build_default_index
from qa.collection import add_documents, remove_documents


def _paragraph(topic: str, holder: str) -> str:
    """About 60 words (a passage of its own) on `topic`, one sentence of which reports `holder`'s view."""
    return (
        f"The {topic} changed slowly over the nineteenth century, as merchants, engineers and city officials "
        f"argued about money and about the river. {holder} argues that the {topic} shaped the whole city. "
        f"Records of the {topic} survive in the municipal archive, with drawings, letters and the accounts of "
        f"every contractor who worked on it between 1820 and 1890."
    )


def _document(title: str, topics: list[str], holders: list[str]) -> str:
    paragraphs = [_paragraph(t, h) for t, h in zip(topics, holders, strict=True)]
    return "\n\n".join([title, *paragraphs]) + "\n"


FILES = {
    "harbour.txt": _document("The Harbour of Lisbon", ["harbour", "quay", "customs house"], ["Maria Costa"] * 3),
    "canals.txt": _document("The Canals of Bruges", ["canal", "lock"], ["Jan de Smet", "Historian Anna Peeters"]),
}
NEW_FILE = (
    "bridges.txt",
    _document("The Bridges of Oslo", ["bridge", "tram line"], ["Knut Berg", "Engineer Ola Dahl"]),
)


def _corpus(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def _work(index: Path) -> dict:
    return SearchIndex.load(index).extra(REUSE_EXTRA)["work"]


def _vectors_by_id(index: Path) -> dict[str, np.ndarray]:
    loaded = SearchIndex.load(index)
    vectors = loaded.passage_vectors(np.arange(len(loaded)))
    return {p.id: v for p, v in zip(loaded.passages, vectors, strict=True)}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """An index of FILES, built from scratch."""
    root = tmp_path_factory.mktemp("base")
    return build_default_index(_corpus(root / "corpus", FILES), root / "index", progress=False)


@pytest.fixture
def previous(base, tmp_path) -> Path:
    """A copy of the base index, for a rebuild to replace."""
    return Path(shutil.copytree(base, tmp_path / "index"))


def test_first_build_encodes_everything(base):
    work = _work(base)
    assert work["passages_encoded"] == work["passages"] >= 5
    assert work["sentences_encoded"] == work["sentences"] and work["passages_parsed"] == work["passages"]


def test_adding_a_file_encodes_and_parses_only_its_passages(base, previous, tmp_path):
    corpus = _corpus(tmp_path / "corpus", FILES)
    incoming = _corpus(tmp_path / "incoming", dict([NEW_FILE])) / NEW_FILE[0]
    add_documents([incoming], corpus, previous, progress=False)
    rebuilt = SearchIndex.load(previous)
    new = [p for p in rebuilt.passages if p.file == NEW_FILE[0]]
    new_sentences = sum(len(p.sentences) for p in new)
    work = _work(previous)
    assert work["passages"] == len(rebuilt)
    assert (work["passages_encoded"], work["sentences_encoded"], work["passages_parsed"]) == (
        len(new),
        new_sentences,
        len(new),
    )
    # Unchanged passages keep the previous index's vectors exactly, and agree with a fresh build's (which
    # encodes them in other batches: bfloat16 rounding differs in the last bits).
    fresh = build_default_index(corpus, tmp_path / "fresh", progress=False, reuse=False)
    before, after, scratch = _vectors_by_id(base), _vectors_by_id(previous), _vectors_by_id(fresh)
    assert set(after) == set(scratch) and set(before) < set(after)
    for pid, vec in before.items():
        assert np.array_equal(after[pid], vec)
    for pid, vec in scratch.items():
        assert float(after[pid] @ vec) > 0.999
    sentences = [np.asarray(SearchIndex.load(i).array("sentence_vectors"), np.float32) for i in (previous, fresh)]
    assert sentences[0].shape == sentences[1].shape
    assert np.min(np.sum(sentences[0] * sentences[1], axis=1)) > 0.999
    # What asking reads is the same as a fresh build's.
    extras = [SearchIndex.load(i) for i in (previous, fresh)]
    for key in ("attributions", "sentence_texts", "sentence_spans", "sentence_owner"):
        assert extras[0].extra(key) == extras[1].extra(key), key
    assert any(extras[0].extra("attributions").values())


def test_removing_a_file_loads_no_model(base, previous, tmp_path, monkeypatch):
    import index.build
    import qa.build

    def no_model(*args, **kwargs):
        raise AssertionError("a removal must not load the model")

    monkeypatch.setattr(qa.build, "load_encoder", no_model)
    monkeypatch.setattr(index.build, "load_encoder", no_model)
    # No export cache either: the query encoder's ONNX export comes from the previous index.
    monkeypatch.setenv("QA_CACHE_DIR", str(tmp_path / "empty-cache"))
    corpus = _corpus(tmp_path / "corpus", FILES)
    remove_documents(["canals.txt"], corpus, previous, progress=False)
    rebuilt = SearchIndex.load(previous)
    assert {p.file for p in rebuilt.passages} == {"harbour.txt"}
    work = _work(previous)
    assert (work["passages_encoded"], work["sentences_encoded"], work["passages_parsed"]) == (0, 0, 0)
    assert rebuilt.manifest["encoder"] == SearchIndex.load(base).manifest["encoder"]


def _resign(index: Path) -> None:
    """Record the index files' current checksums in its manifest, as a build would have."""
    manifest = json.loads((index / layout.MANIFEST_FILE).read_text())
    for rel in manifest["files"]:
        manifest["files"][rel] = layout.sha256_file(index / rel)
    manifest[manifest_schema.CHECKSUM_KEY] = manifest_schema.checksum(manifest)
    (index / layout.MANIFEST_FILE).write_text(json.dumps(manifest))


def _reuse_info_from_another_model(index: Path) -> None:
    path = index / f"{REUSE_EXTRA}.json"
    info = json.loads(path.read_text())
    info["vectors"]["model"] = "another-model"
    path.write_text(json.dumps(info))
    _resign(index)


def _corrupt(index: Path) -> None:
    path = index / "sentence_vectors.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "says"),
    [(_reuse_info_from_another_model, "another model"), (_corrupt, "checksum mismatch")],
    ids=["another-model", "corrupt"],
)
def test_unusable_previous_index_means_a_full_build(previous, tmp_path, caplog, damage, says):
    damage(previous)
    corpus = _corpus(tmp_path / "corpus", FILES)
    with caplog.at_level(logging.WARNING, logger="index.reuse"):
        build_default_index(corpus, previous, progress=False)
    why = [r.getMessage() for r in caplog.records if r.name == "index.reuse"]
    assert len(why) == 1 and "building from scratch" in why[0] and says in why[0]
    work = _work(previous)
    assert work["passages_encoded"] == work["passages"] and work["sentences_encoded"] == work["sentences"]
