"""qa.citation: the ready-to-paste text and the CSL-JSON for every kind of work the manifest uses, and for any
mix of present and missing fields."""

import itertools
import json
import re

import pytest

from corpus.model import Work
from qa.citation import csl_name, csl_type, make_citation


def work(**kw) -> Work:
    base = dict(
        id="cpc-question-of-stalin-1963",
        file="003_4362f69ef8860a9c.txt",
        title="On the Question of Stalin",
        authors=["Communist Party of China"],
        year=1963,
        kind="party statement",
        origin="Statement of the Central Committee of the Communist Party of China; Red Rebel Press, 2023",
        viewpoint="defends Stalin's record",
        viewpoint_label="pro-stalin-cpc",
    )
    return Work(**(base | kw))


def test_text_has_author_title_origin_kind_year_section_and_location():
    c = make_citation(work(), "II", 1200, 1850, "003_4362f69ef8860a9c.txt")
    assert c.text == (
        "Communist Party of China. “On the Question of Stalin.” Statement of the Central Committee of the "
        "Communist Party of China. Party statement, 1963. Section “II.” "
        "003_4362f69ef8860a9c.txt, chars 1200–1850."
    )


def test_missing_year_section_and_author_are_left_out_plainly():
    c = make_citation(work(year=None, authors=[], origin=""), None, 0, 10, "f.txt")
    assert c.text == "“On the Question of Stalin.” Party statement, n.d. f.txt, chars 0–10."
    assert "issued" not in c.csl and "section" not in c.csl and "author" not in c.csl


@pytest.mark.parametrize(
    "kind, csl",
    [
        ("encyclopedia article", "entry-encyclopedia"),
        ("academic essay", "article"),
        ("party statement", "report"),
        ("introduction", "chapter"),
        ("front matter", "chapter"),
        ("leaflet", "document"),
    ],
)
def test_csl_type_follows_kind(kind, csl):
    assert csl_type(kind) == csl


def test_csl_json_is_serialisable_and_complete():
    c = make_citation(work(), "II", 1200, 1850, "003_4362f69ef8860a9c.txt")
    csl = json.loads(json.dumps(c.csl))
    assert csl["id"] == "cpc-question-of-stalin-1963:1200-1850"
    assert csl["type"] == "report"
    assert csl["title"] == "On the Question of Stalin"
    assert csl["author"] == [{"literal": "Communist Party of China"}]
    assert csl["issued"] == {"date-parts": [[1963]]}
    assert csl["publisher"].startswith("Statement of the Central Committee")
    assert "1200–1850" in csl["note"] and "II" in csl["note"]


def test_contained_kinds_put_origin_in_container_title():
    c = make_citation(work(kind="encyclopedia article", origin="English Wikipedia"), None, 1, 2, "f.txt")
    assert c.csl["container-title"] == "English Wikipedia" and "publisher" not in c.csl


@pytest.mark.parametrize(
    "name, expected",
    [
        ("H. Bruce Franklin", {"family": "Franklin", "given": "H. Bruce"}),
        ("Frederick Strachan", {"family": "Strachan", "given": "Frederick"}),
        ("Ludwig van Beethoven", {"family": "van Beethoven", "given": "Ludwig"}),
        ("Wikipedia contributors", {"literal": "Wikipedia contributors"}),
        ("Communist Party of China", {"literal": "Communist Party of China"}),
        ("Mao", {"literal": "Mao"}),
    ],
)
def test_names(name, expected):
    assert csl_name(name) == expected


def test_an_origin_ending_in_a_quoted_title_still_gets_its_full_stop():
    c = make_citation(work(origin='English Wikipedia, article "Stalinism"; old'), None, 1, 2, "f.txt")
    assert 'article "Stalinism". Party statement' in c.text


# --- any mix of present and missing fields ----------------------------------------------------------------

# CSL-JSON 1.0 (csl-data.json): the item types and the variables an item may carry.
CSL_TYPES_ALL = set(
    "article article-journal article-magazine article-newspaper bill book broadcast chapter classic collection "
    "dataset document entry entry-dictionary entry-encyclopedia event figure graphic hearing interview legal_case "
    "legislation manuscript map motion_picture musical_score pamphlet paper-conference patent performance "
    "periodical personal_communication post post-weblog regulation report review review-book software song speech "
    "standard thesis treaty webpage".split()
)
CSL_STRINGS = set(
    "id abstract annote archive archive_location authority call-number citation-label collection-title "
    "container-title container-title-short dimensions DOI edition event event-place genre ISBN ISSN issue "
    "jurisdiction keyword language locator medium note number original-publisher original-publisher-place "
    "original-title page page-first PMCID PMID publisher publisher-place references section source status "
    "title title-short URL version volume year-suffix".split()
)
CSL_NAME_KEYS = {"family", "given", "dropping-particle", "non-dropping-particle", "suffix", "literal"}

TITLES = ["On the Question of Stalin", "What Is Stalinism?", "The “Secret” Speech", "  ", ""]
AUTHORS = [[], ["H. Bruce Franklin"], ["Fonseca, Maria", "Communist Party of China"], ["  "]]
YEARS = [None, 1963]
KINDS = ["", "party statement", "encyclopedia article"]
ORIGINS = ["", "added file lisbon.md (no manifest entry; title inferred)", "English Wikipedia"]
SECTIONS = [None, "II", "Why? A question."]
PAGES = [None, (3, 3), (3, 4)]


def assert_valid_csl(csl: dict, w: Work, pages) -> None:
    json.dumps(csl)
    assert csl["type"] in CSL_TYPES_ALL
    extra = set(csl) - CSL_STRINGS - {"type", "author", "issued"}
    assert not extra, extra
    for key in CSL_STRINGS & set(csl):
        assert isinstance(csl[key], str) and csl[key] and csl[key] == csl[key].strip(), key
    for name in csl.get("author", []):
        assert set(name) <= CSL_NAME_KEYS and ("literal" in name or "family" in name) and all(name.values())
    assert ("issued" in csl) == (w.year is not None)
    if "issued" in csl:
        assert csl["issued"] == {"date-parts": [[w.year]]}
    assert ("page" in csl) == (pages is not None)
    assert "publisher" not in csl or "(" not in csl["publisher"] or ")" in csl["publisher"]


def assert_well_formed(text: str) -> None:
    assert text == " ".join(text.split()), "no doubled, leading or trailing spaces"
    assert text.count("“") == text.count("”") and text.count("(") == text.count(")")
    assert "“”" not in text and "“.”" not in text and "None" not in text
    assert not re.search(r"\.\.|\. \.|,\.|\s[.,]", text), "no empty part"
    assert text[0].isalnum() or text[0] == "“", text  # a word or a quoted title, never stray punctuation
    assert text.endswith("."), text


@pytest.mark.parametrize("title, authors", itertools.product(TITLES, AUTHORS))
def test_every_mix_of_present_and_missing_fields_gives_a_well_formed_citation(title, authors):
    for year, kind, origin, section, pages in itertools.product(YEARS, KINDS, ORIGINS, SECTIONS, PAGES):
        w = work(title=title, authors=authors, year=year, kind=kind, origin=origin)
        c = make_citation(w, section, 10, 20, "f.pdf", pages)
        assert_well_formed(c.text)
        assert_valid_csl(c.csl, w, pages)
        assert c.text.endswith(f"f.pdf, {'' if pages is None else 'p. 3, ' if pages == (3, 3) else 'pp. 3–4, '}"
                               "chars 10–20.")  # fmt: skip
        assert ("n.d." in c.text) == (year is None)
        if title.strip():
            assert f"“{title.replace('“', '‘').replace('”', '’')}" in c.text


def test_an_origin_cut_at_its_semicolon_keeps_its_brackets_whole():
    c = make_citation(work(origin="added file lisbon.md (no manifest entry; title inferred)"), None, 0, 1, "f")
    assert "added file lisbon.md (no manifest entry; title inferred)." in c.text
    assert c.csl["publisher"] == "added file lisbon.md (no manifest entry; title inferred)"


def test_a_work_without_author_year_or_kind_reads_plainly():
    c = make_citation(work(authors=[], year=None, kind="", origin=""), None, 5, 9, "scan.pdf", (2, 2))
    assert c.text == "“On the Question of Stalin.” n.d. scan.pdf, p. 2, chars 5–9."
    assert c.csl == {
        "id": "cpc-question-of-stalin-1963:5-9",
        "type": "document",
        "title": "On the Question of Stalin",
        "page": "2",
        "note": "scan.pdf, p. 2, chars 5–9",
    }


def test_family_comma_given_and_description_in_csl():
    c = make_citation(work(authors=["Fonseca, Maria"], description="A survey."), None, 0, 1, "f")
    assert c.csl["author"] == [{"family": "Fonseca", "given": "Maria"}] and c.csl["abstract"] == "A survey."
