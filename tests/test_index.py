"""The index package: building, loading, validation and crash safety, on real corpus text."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus.model import Passage, Work
from index import layout
from index.encoder import ModelSpec, model_dir
from index.store import IndexLoadError, SearchIndex, StaleIndexError

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
FILE = "001_9f48a60c5ebb207f.txt"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")


def corpus_passages(max_sentences: int = 3) -> tuple[list[Passage], list[Work], dict[str, str]]:
    """Passages of up to `max_sentences` sentences, with real offsets into the corpus file."""
    raw = (CORPUS / FILE).read_text(encoding="utf-8")
    passages, section, pos = [], None, 0
    for line in raw.split("\n"):
        start, end = pos, pos + len(line)
        pos = end + 1
        if line == "See also":
            break  # the bibliography follows
        if line and not line.rstrip().endswith((".", '"', "”")) and len(line) < 40:
            section = line
            continue
        bounds = [start] + [start + m.end() for m in SENTENCE_END.finditer(line)] + [end]
        sentences = [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if raw[a:b].strip()]
        for i in range(0, len(sentences), max_sentences):
            group = sentences[i : i + max_sentences]
            s, e = group[0][0], group[-1][1]
            text = raw[s:e].strip()
            e = s + len(raw[s:e].rstrip())
            pid = f"001-{len(passages):03d}"
            passages.append(Passage(pid, FILE, s, e, "stalinism", section, text, sentences=group))
    work = Work("stalinism", FILE, "Stalinism", ["Wikipedia"], 2024, "encyclopedia article", "web", "x", "y")
    checksum = hashlib.sha256((CORPUS / FILE).read_bytes()).hexdigest()
    return passages, [work], {FILE: checksum}


@pytest.fixture(scope="module")
def corpus():
    return corpus_passages()


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> Path:
    from index.build import build_index

    passages, works, files = corpus
    out = tmp_path_factory.mktemp("idx") / "index"
    extra = {"attributions": {"001-000": [{"holder": "historians"}]}}
    arrays = {"sentence_owner": np.arange(len(passages), dtype=np.int64)}
    return build_index(passages, works, files, out, extra=extra, arrays=arrays, show_progress=False)


@pytest.fixture
def index_copy(built, tmp_path) -> Path:
    """A private copy of the built index that a test may damage."""
    return Path(shutil.copytree(built, tmp_path / "index"))


def snapshot(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {p.relative_to(path).as_posix(): layout.sha256_file(p) for p in files}


def test_passages_have_real_offsets(corpus):
    passages, _, _ = corpus
    raw = (CORPUS / FILE).read_text(encoding="utf-8")
    assert len(passages) > 30
    assert all(raw[p.start : p.end] == p.text for p in passages)
    assert {p.section for p in passages} >= {None, "Etymology", "Deportations"}


def test_missing_model_package_names_it():
    with pytest.raises(RuntimeError, match="pip install no-such-model-pkg"):
        model_dir(ModelSpec("no_such_model_pkg", "model"))


def test_recover_restores_old_and_drops_debris(tmp_path):
    out = tmp_path / "index"
    old = layout.sibling(out, "old", 12345)
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    tmp = layout.sibling(out, "tmp", int(dead.stdout))  # a build whose process has exited
    tmp.mkdir()
    layout.recover(out)
    assert (out / "manifest.json").exists()
    assert not old.exists() and not tmp.exists()


@pytest.mark.slow
def test_dense_search_finds_paraphrase(built):
    index = SearchIndex.load(built)
    q = index.encode_query("Where does the word Stalinism come from?")
    scores, idx = index.dense_search(q, 3)
    assert scores.shape == idx.shape == (1, 3) and q.shape == (384,)
    assert "Etymology" in [index.passages[i].section for i in idx[0]]
    assert float(index.passage_vectors([idx[0][0]])[0] @ q) == pytest.approx(scores[0][0], abs=1e-4)
    _, idx = index.dense_search(index.encode_query("What did Chairman Mao think of Stalin?"), 3)
    assert index.passages[idx[0][0]].section == "Maoism and Hoxhaism"


@pytest.mark.slow
def test_lexical_search_stems_plurals(built):
    index = SearchIndex.load(built)
    scores, idx = index.lexical_search("kulak", 5)  # the corpus only says "kulaks"
    assert len(idx) > 0 and (scores > 0).all() and list(scores) == sorted(scores, reverse=True)
    assert all("kulaks" in index.passages[i].text for i in idx)
    assert len(index.lexical_search("the of and", 5)[1]) == 0  # stopwords only
    assert len(index.lexical_search("xylophonic", 5)[1]) == 0


def test_hyphenated_words_are_also_indexed_closed():
    (doc,) = layout.bm25_tokenize(["post-war plans of the anti-Stalinist left, 1936-38"], False, closed_compounds=True)
    assert {"post", "war", "postwar", "antistalinist"} <= set(doc) and "193638" not in doc
    (question,) = layout.bm25_tokenize(["the Tito-Stalin split"], False)
    assert "titostalin" not in question  # a closed form no text uses would count as a missing key term


@pytest.mark.slow
def test_lexical_search_matches_a_closed_compound(built):
    index = SearchIndex.load(built)
    _, idx = index.lexical_search("counterrevolutionary", 5)  # the text writes "counter-revolutionary"
    assert len(idx) > 0 and all("counter-revolutionary" in index.passages[i].text for i in idx)


@pytest.mark.slow
def test_manifest_records_checksums(built, corpus):
    passages, _, files = corpus
    index = SearchIndex.load(built, expected_files=files)
    m = index.manifest
    assert m["corpus_files"] == files
    assert m["passage_count"] == len(passages) == len(index) == index._dense.ntotal
    assert m["model"] == {**m["model"], "name": "all-MiniLM-L6-v2", "dim": 384}
    assert m["dense"]["type"] == "flat_ip"
    assert set(m["libraries"]) >= {"faiss-cpu", "bm25s", "sentence-transformers", "torch"}
    on_disk = snapshot(built)
    del on_disk["manifest.json"]
    assert m["files"] == on_disk
    assert {"dense.faiss", "passages.jsonl", "works.json", "attributions.json"} <= set(on_disk)
    assert index.extra("attributions") == {"001-000": [{"holder": "historians"}]}
    assert index.extra("nothing") is None
    assert np.array_equal(index.array("sentence_owner"), np.arange(len(passages)))
    assert index.array("nothing") is None and "sentence_owner.npy" in on_disk
    assert index.works["stalinism"].title == "Stalinism"
    assert index.by_id["001-000"] is index.passages[0]


@pytest.mark.slow
def test_loads_without_mmap(built):
    index = SearchIndex.load(built, mmap=False)
    assert index.lexical_search("Kaganovich", 1)[1].size == 1


def _truncate_dense(path: Path) -> None:
    dense = path / "dense.faiss"
    dense.write_bytes(dense.read_bytes()[: dense.stat().st_size // 2])


def _edit_passages(path: Path) -> None:
    store = path / "passages.jsonl"
    store.write_text(store.read_text(encoding="utf-8").replace("Stalin", "Stalim", 1), encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_truncate_dense, "dense.faiss"),
        (_edit_passages, "passages.jsonl"),
        (lambda p: (p / "manifest.json").unlink(), "manifest.json"),
        (lambda p: shutil.rmtree(p / "bm25"), "missing"),
        (lambda p: shutil.rmtree(p), "no index directory"),
    ],
)
def test_load_refuses_damaged_index(index_copy, damage, says):
    damage(index_copy)
    with pytest.raises(IndexLoadError, match=says) as err:
        SearchIndex.load(index_copy)
    assert "qa index build" in str(err.value)


@pytest.mark.slow
def test_load_refuses_stale_corpus(index_copy, corpus):
    files = {**corpus[2], FILE: "0" * 64, "new.txt": "1" * 64}
    with pytest.raises(StaleIndexError, match=f"changed: {FILE}; added: new.txt") as err:
        SearchIndex.load(index_copy, expected_files=files)
    assert "qa index build" in str(err.value)


@pytest.mark.slow
def test_interrupted_build_keeps_previous_index(index_copy, corpus, monkeypatch):
    import index.build as build

    before = snapshot(index_copy)

    def crash(root, *args):
        (root / "passages.jsonl").write_text("half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "_write_store", crash)
    with pytest.raises(KeyboardInterrupt):
        build.build_index(*corpus[:2], {FILE: "changed"}, index_copy, show_progress=False)
    assert snapshot(index_copy) == before
    assert not layout.siblings(index_copy, "tmp")
    assert len(SearchIndex.load(index_copy, expected_files=corpus[2])) == len(corpus[0])


@pytest.mark.slow
def test_crash_mid_swap_restores_previous_index(index_copy, corpus, monkeypatch):
    import index.build as build

    before = snapshot(index_copy)

    def die_after_first_rename(tmp, out_dir):
        out_dir.rename(layout.sibling(out_dir, "old"))
        raise SystemExit("killed")

    monkeypatch.setattr(build.layout, "swap_in", die_after_first_rename)
    with pytest.raises(SystemExit):
        build.build_index(*corpus[:2], {FILE: "changed"}, index_copy, show_progress=False)
    assert not index_copy.exists()
    index = SearchIndex.load(index_copy, expected_files=corpus[2])
    assert len(index) == len(corpus[0]) and snapshot(index_copy) == before
    assert not layout.siblings(index_copy, "old")


@pytest.mark.slow
def test_rebuild_replaces_index(index_copy, corpus):
    from index.build import build_index

    passages, works, files = corpus
    build_index(passages[:10], works, {FILE: "f" * 64}, index_copy, show_progress=False, section_prefix=False)
    index = SearchIndex.load(index_copy, expected_files={FILE: "f" * 64})
    assert len(index) == 10 and index.manifest["model"]["section_prefix"] is False
    assert index.extra("attributions") is None and not (index_copy / "attributions.json").exists()
    assert index.array("sentence_owner") is None
    assert not layout.siblings(index_copy, "old") and not layout.siblings(index_copy, "tmp")


@pytest.mark.slow
def test_hnsw_above_threshold(corpus, tmp_path, built):
    from index.build import build_index

    out = build_index(*corpus, tmp_path / "ann", ann_threshold=10, ef_search=40, show_progress=False)
    index = SearchIndex.load(out)
    assert index.manifest["dense"]["type"] == "hnsw_flat"
    assert index.manifest["dense"]["hnsw"] == {"M": 32, "ef_construction": 200, "ef_search": 40}
    assert type(index._dense).__name__ == "IndexHNSWFlat" and index._dense.hnsw.efSearch == 40
    q = index.encode_query("Where does the word Stalinism come from?")
    exact = SearchIndex.load(built)
    top = index.dense_search(q, 1)[1][0][0]
    assert top == exact.dense_search(q, 1)[1][0][0]
    assert np.allclose(index.passage_vectors([top]), exact.passage_vectors([top]))


def test_invalid_extra_key_rejected(corpus, tmp_path):
    from index.build import build_index

    with pytest.raises(ValueError, match="invalid extra key"):
        build_index(*corpus, tmp_path / "x", extra={"../evil": 1})
    with pytest.raises(ValueError, match="invalid extra key"):
        build_index(*corpus, tmp_path / "x", extra={"manifest": 1})
    with pytest.raises(ValueError, match="numpy array"):
        build_index(*corpus, tmp_path / "x", arrays={"owners": [1, 2]})


def test_precomputed_passage_vectors_are_used(corpus, built, tmp_path):
    from index.build import build_index

    stored = SearchIndex.load(built)
    n = len(stored.passages)
    vectors = stored.passage_vectors(range(n))
    with pytest.raises(ValueError, match="one row per passage"):
        build_index(*corpus, tmp_path / "x", passage_vectors=vectors[:-1])
    again = SearchIndex.load(build_index(*corpus, tmp_path / "y", passage_vectors=vectors[::-1].copy()))
    assert np.allclose(again.passage_vectors([0]), vectors[-1])  # taken as given, not re-encoded
