"""Documents in every supported format, with their metadata: Markdown front matter, HTML meta tags, PDFs made by
four producers (fpdf2, reportlab, LibreOffice, pdfTeX), a DOCX (python-docx) and a scanned PDF.

The fixtures in tests/data/formats were made once by tests/data/make_fixtures.py; these tests need none of the
tools that made them.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from api.cli import raw_reader
from corpus import formats
from corpus.ingest import corpus_files, load_corpus, raw_text
from qa.citation import make_citation
from qa.collection import add_documents
from qa.schema import Source

FIXTURES = Path(__file__).resolve().parent / "data" / "formats"
WORD = re.compile(r"\w+")
# file -> (title, author, year, running header) as the producer wrote them (LibreOffice dates a PDF when it
# exports it, so its year is not checked)
PDFS = {
    "survey-fpdf2.pdf": ("Tidal Survey of the Estuary", "Maria Fonseca", 2019, "Harbour Records of the Estuary"),
    "ledger-reportlab.pdf": ("Notes on the Estuary Ledger", "Jonas Berg", 2000, "Port Archive Studies"),
    "board-libreoffice.pdf": ("Minutes of the Harbour Board", "Ana Ribeiro", None, "Harbour Board Papers"),
    "keepers-pdflatex.pdf": ("The Lighthouse Keepers of the Southern Bank", "Teresa Lopes", 2010, "Lighthouse Keepers"),
}


def collection(tmp_path: Path, *files: str, texts: dict[str, str] | None = None, manifest: str | None = None):
    """A collection of the named fixtures and of `texts` (file name -> content), ingested."""
    root = tmp_path / "collection"
    root.mkdir(exist_ok=True)
    for name in files:
        shutil.copy(FIXTURES / name, root / name)
    for name, text in (texts or {}).items():
        (root / name).write_text(text, encoding="utf-8")
    if manifest:
        (root / "manifest.toml").write_text(manifest, encoding="utf-8")
    return load_corpus(root)


def words_in_order(text: str, raw: str) -> bool:
    """The verbatim rule (as in test_corpus): every word of the passage, in order, in its raw span. A soft hyphen
    splits a word hyphenated at a line end into its two raw halves."""
    raw_words = iter(w.lower() for w in WORD.findall(raw))
    return all(any(w == r for r in raw_words) for w in (w.lower() for w in WORD.findall(text)))


def readable(p) -> str:
    return p.text.replace("\u00ad", "")


def only_work(c):
    (work,) = c.works.values()
    return work


# --- Markdown -----------------------------------------------------------------------------------------------

FRONT_MATTER_MD = """---
title: "Lisbon After the Earthquake"
author: [Rui Costa, Helena Marques]
date: 2018-06-01
description: How the lower town was rebuilt.
kind: essay
publisher: Tagus Review
---

# The rebuilding of the Baixa

After the earthquake of 1755 the lower town was rebuilt on a grid of straight streets, planned by military
engineers who wanted every building to withstand the next shock. The new blocks used a wooden cage inside the
walls, and the plans were drawn quickly so that trade could return to the river front within a few years.
"""


def test_markdown_front_matter_is_metadata_never_a_passage(tmp_path):
    c = collection(tmp_path, texts={"lisbon.md": FRONT_MATTER_MD})
    w = only_work(c)
    assert (w.title, w.authors, w.year, w.kind) == ("Lisbon After the Earthquake", ["Rui Costa", "Helena Marques"],
                                                    2018, "essay")  # fmt: skip
    assert w.description == "How the lower town was rebuilt." and w.origin == "Tagus Review" and w.inferred
    text = " ".join(p.text for p in c.passages)
    assert "title:" not in text and "---" not in text and "Helena" not in text
    assert text.startswith("The rebuilding of the Baixa After the earthquake")
    assert {p.section for p in c.passages} == {"The rebuilding of the Baixa"}
    for p in c.passages:
        assert words_in_order(p.text, c.texts["lisbon.md"][p.start : p.end])


def test_markdown_title_from_the_first_heading_and_authors_from_one_string(tmp_path):
    body = FRONT_MATTER_MD.split("---\n", 2)[2]
    c = collection(tmp_path, texts={"a.md": body, "b.md": "---\nauthor: Ana Lima and Rui Sá\nyear: 1999\n---\n" + body})
    assert c.works["a"].title == "The rebuilding of the Baixa" and c.works["a"].authors == []
    assert c.works["b"].title == "The rebuilding of the Baixa"  # front matter without a title: the heading
    assert (c.works["b"].authors, c.works["b"].year) == (["Ana Lima", "Rui Sá"], 1999)


def test_a_markdown_rule_at_the_top_is_not_front_matter(tmp_path):
    text = "---\n\nJust a rule, then prose about the harbour and its ships, which is long enough to keep.\n"
    assert formats.front_matter(text) is None
    c = collection(tmp_path, texts={"rule.md": text})
    assert "Just a rule" in c.passages[0].text


def test_a_manifest_entry_wins_over_what_the_file_states(tmp_path):
    manifest = """
[[files]]
name = "lisbon.md"
[[files.works]]
id = "lisbon-essay"
title = "Rebuilding Lisbon"
authors = ["M. Pereira"]
year = 2001
kind = "book chapter"
origin = "Pereira, Cities of Stone"
viewpoint = "an architectural history"
viewpoint_label = "history"
"""
    c = collection(tmp_path, texts={"lisbon.md": FRONT_MATTER_MD}, manifest=manifest)
    w = only_work(c)
    assert (w.id, w.title, w.authors, w.year, w.inferred) == ("lisbon-essay", "Rebuilding Lisbon", ["M. Pereira"],
                                                              2001, False)  # fmt: skip
    assert "title:" not in " ".join(p.text for p in c.passages)  # front matter is never a passage, entry or not


# --- HTML ---------------------------------------------------------------------------------------------------

HTML_BODY = (
    "<body><h1>Harbour lights</h1><p>The harbour lights were lit each evening by the keeper, who walked the "
    "length of the mole with a ladder and a can of oil, in every weather, for forty years.</p></body></html>"
)


@pytest.mark.parametrize(
    "head, title, authors, year",
    [
        (
            '<meta name="citation_title" content="Harbour Lights of Porto"><meta name="citation_author" '
            'content="Fonseca, Maria"><meta name="citation_author" content="Berg, Jonas">'
            '<meta name="citation_publication_date" content="2016/04/02">'
            '<meta name="citation_journal_title" content="Port History">',
            "Harbour Lights of Porto",
            ["Fonseca, Maria", "Berg, Jonas"],
            2016,
        ),
        (
            '<meta name="DC.title" content="Harbour Lights"><meta name="DC.creator" content="Ana Lima">'
            '<meta name="DCTERMS.issued" content="2011-09-30">',
            "Harbour Lights",
            ["Ana Lima"],
            2011,
        ),
        (
            '<meta property="og:title" content="The Keeper of the Mole"><meta property="article:author" '
            'content="https://example.org/people/ana"><meta name="author" content="Rui Costa">'
            '<meta property="article:published_time" content="2022-01-05T10:00:00Z">',
            "The Keeper of the Mole",
            ["Rui Costa"],
            2022,
        ),
        (
            '<meta name="author" content="Rui Costa"><meta name="date" content="March 1998">',
            "Site | Lights",
            ["Rui Costa"],
            1998,
        ),  # fmt: skip
    ],
)
def test_html_metadata_from_meta_tags(tmp_path, head, title, authors, year):
    page = f"<html><head><title>Site | Lights</title>{head}<meta name='description' content='A keeper.'></head>"
    c = collection(tmp_path, texts={"lights.html": page + HTML_BODY})
    w = only_work(c)
    assert (w.title, w.authors, w.year, w.description) == (title, authors, year, "A keeper.")
    assert "Site" not in " ".join(p.text for p in c.passages)


def test_a_byline_naming_the_stated_author_is_a_byline_passage(tmp_path):
    head = '<html><head><meta name="author" content="Rui Costa"></head><body><h1>Harbour lights</h1>'
    byline = "<p>By Rui Costa | 5 January 2022</p>"
    prose = "<p>Rui Costa walked the mole with the keeper, who lit the harbour lights each evening for forty years.</p>"
    c = collection(tmp_path, texts={"lights.html": head + byline + prose + "</body></html>"})
    body = " ".join(p.text for p in c.passages if p.kind == "body")
    assert "January" not in body and "By Rui" not in body
    assert "Rui Costa walked the mole" in body  # a sentence that names the author is prose
    [by] = [p for p in c.passages if p.kind == "byline"]
    assert by.text == "By Rui Costa | 5 January 2022"


def test_html_journal_article_is_cited_in_its_journal(tmp_path):
    head = '<meta name="citation_title" content="Lights"><meta name="citation_journal_title" content="Port History">'
    c = collection(tmp_path, texts={"lights.html": f"<html><head>{head}</head>" + HTML_BODY})
    w = only_work(c)
    cite = make_citation(w, None, 0, 10, "lights.html")
    assert cite.csl["type"] == "article-journal" and cite.csl["container-title"] == "Port History"


# --- PDF ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PDFS))
def test_pdf_metadata_pages_and_verbatim_passages(tmp_path, name):
    title, author, year, header = PDFS[name]
    c = collection(tmp_path, name)
    w = only_work(c)
    assert (w.title, w.authors) == (title, [author]) and (year is None or w.year == year)
    raw = c.texts[name]
    assert raw == raw_text(tmp_path / "collection" / name)  # the text the offsets point into, read again
    assert c.passages and c.pages[name][0] == 0 and len(c.pages[name]) >= 2
    for p in c.passages:
        assert words_in_order(p.text, raw[p.start : p.end]), p.id
        first, last = p.pages
        assert 1 <= first <= last <= len(c.pages[name])
        assert c.pages[name][first - 1] <= p.start  # the passage starts on its first page
        assert header not in p.text  # the running header is layout, not text
        assert not re.search(r"\bPage \d\b", p.text)
        assert not re.search(r"[a-z]- [a-z]", readable(p))  # no word left broken at a line end
    assert header in raw  # ... yet it stays in the raw text: cleaning deletes it, like any chrome


@pytest.mark.parametrize("name", ["survey-fpdf2.pdf", "ledger-reportlab.pdf"])
def test_a_word_hyphenated_at_a_line_end_is_joined(tmp_path, name):
    c = collection(tmp_path, name)
    p = next(p for p in c.passages if "pamphlet gave captains" in p.text)
    assert "gave captains the information they needed" in readable(p)
    assert "infor-\nmation" in c.texts[name][p.start : p.end]  # the raw text keeps the line break


def test_a_paragraph_that_runs_on_across_a_page_break_is_one_passage_citing_both_pages(tmp_path):
    c = collection(tmp_path, "ledger-reportlab.pdf")
    p = next(p for p in c.passages if "cross the bar" in p.text)
    raw = c.texts[p.file][p.start : p.end]
    assert "at any\n\n1\n\nPort Archive Studies\n\nstate of" in raw  # page 1's foot, page 2's head
    assert "cross the bar safely at any state of the tide" in p.text
    assert p.pages == (1, 2)
    cite = make_citation(c.works[p.work], p.section, p.start, p.end, p.file, p.pages)
    assert "ledger-reportlab.pdf, pp. 1–2, chars" in cite.text and cite.csl["page"] == "1-2"


def test_every_pdf_passage_is_cited_with_its_page(tmp_path):
    c = collection(tmp_path, "survey-fpdf2.pdf")
    for p in c.passages:
        cite = make_citation(c.works[p.work], p.section, p.start, p.end, p.file, p.pages)
        label = f"p. {p.pages[0]}" if p.pages[0] == p.pages[1] else f"pp. {p.pages[0]}–{p.pages[1]}"
        assert f"survey-fpdf2.pdf, {label}, chars {p.start}–{p.end}." in cite.text
        assert cite.text.startswith("Maria Fonseca. “Tidal Survey of the Estuary.” Document, 2019.")
    assert {p.pages[0] for p in c.passages} == {1, 2}
    source = Source(file="f", start=0, end=1, work="w", title="t", author="a", year=None, section=None, kind="k")
    assert source.page is None and source.page_end is None  # optional: older clients and texts unchanged


def test_pdf_headings_set_in_a_larger_font_open_sections(tmp_path):
    c = collection(tmp_path, "keepers-pdflatex.pdf", "board-libreoffice.pdf")
    assert {p.section for p in c.passages if p.file == "keepers-pdflatex.pdf"} >= {"1 The keepers"}
    sections = {p.section for p in c.passages if p.file == "board-libreoffice.pdf"}
    assert {"Dredging of the channel", "Repairs to the lighthouse"} <= sections


def test_a_scanned_pdf_is_skipped_with_its_reason(tmp_path):
    c = collection(tmp_path, "scanned.pdf", "survey-fpdf2.pdf")
    (skipped,) = c.skipped
    assert skipped.file == "scanned.pdf"
    assert skipped.reason == "no text layer (scanned PDF?): 1 page(s) without extractable text"
    assert set(c.files) == set(corpus_files(tmp_path / "collection"))  # an index of it is not stale at once
    with pytest.raises(ValueError, match=r"^.*scanned\.pdf: no text layer \(scanned PDF\?\)"):
        add_documents([FIXTURES / "scanned.pdf"], tmp_path / "collection", tmp_path / "index")


def test_a_damaged_pdf_or_docx_is_skipped_with_a_one_line_reason(tmp_path):
    c = collection(tmp_path, texts={"broken.pdf": "%PDF-1.4\nnot really a pdf", "broken.docx": "PK not a zip"})
    reasons = {s.file: s.reason for s in c.skipped}
    assert reasons["broken.pdf"].startswith("not a readable PDF (") and "\n" not in reasons["broken.pdf"]
    assert reasons["broken.docx"].startswith("not a readable DOCX (") and "\n" not in reasons["broken.docx"]


def test_extraction_is_deterministic(tmp_path):
    for name in [*PDFS, "minutes.docx"]:
        first = formats.extract(FIXTURES / name)
        formats._CACHE.clear()
        again = formats.extract(FIXTURES / name)
        assert (first.text, first.pages, first.noise, first.headings) == (
            again.text, again.pages, again.noise, again.headings
        )  # fmt: skip


def test_the_cli_reads_a_pdf_as_its_extracted_text(tmp_path):
    c = collection(tmp_path, "survey-fpdf2.pdf")
    assert raw_reader(tmp_path / "collection")("survey-fpdf2.pdf") == c.texts["survey-fpdf2.pdf"]
    assert raw_reader(tmp_path / "collection")("missing.pdf") is None


# --- DOCX ---------------------------------------------------------------------------------------------------


def test_docx_metadata_headings_and_verbatim_passages(tmp_path):
    c = collection(tmp_path, "minutes.docx")
    w = only_work(c)
    assert (w.title, w.authors, w.year) == ("Minutes of the Harbour Board", ["Ana Ribeiro"], 2021)
    assert w.description.startswith("The board's minutes of its March meeting")
    by_section: dict[str, str] = {}
    for p in c.passages:
        by_section[p.section] = by_section.get(p.section, "") + p.text
    assert set(by_section) == {"Dredging of the channel", "Repairs to the lighthouse"}
    # a heading is read, so it opens the passage under it (the title over the first sub-heading too)
    assert by_section["Dredging of the channel"].startswith("Minutes of the Harbour Board Dredging of the channel The")
    assert "lamp room leaked" in by_section["Repairs to the lighthouse"]
    for p in c.passages:
        assert p.pages is None  # a DOCX has no fixed pages: its citations give characters only
        assert words_in_order(p.text, c.texts["minutes.docx"][p.start : p.end])
