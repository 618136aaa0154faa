"""qa.citation: the ready-to-paste text and the CSL-JSON for every kind of work the manifest uses."""

import json

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
    assert "issued" not in c.csl and "section" not in c.csl and c.csl["author"] == []


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
