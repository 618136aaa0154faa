"""`qa serve` builds the index when there is none or the corpus changed, and never over a damaged one."""

from __future__ import annotations

import json
import shutil

from api.serve import why_build
from api.settings import Settings
from corpus.ingest import CORPUS_DIR, corpus_files


def settings(tmp_path, corpus):
    return Settings(index_dir=tmp_path / "index", corpus_dir=corpus)


def test_build_reasons(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS_DIR / "001_9f48a60c5ebb207f.txt", corpus)
    s = settings(tmp_path, corpus)
    assert "no index" in why_build(s)

    s.index_dir.mkdir()
    manifest = s.index_dir / "manifest.json"
    manifest.write_text(json.dumps({"corpus_files": corpus_files(corpus)}), encoding="utf-8")
    assert why_build(s) is None

    (corpus / "added.md").write_text("# New\n\nA new document about the Comintern and its congresses.\n")
    assert "corpus changed" in why_build(s)

    manifest.write_text("{not json", encoding="utf-8")  # damaged: loading will refuse it, loudly
    assert why_build(s) is None
