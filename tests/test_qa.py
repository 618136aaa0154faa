"""Asking, end to end on the real index: ranking, highlights, copies, viewpoints, filters and abstention.

The questions here are our own, not the dev set's. Every test runs on both stores: the embedded files and a real
PostgreSQL (tests/_pg_support.py), since nothing above index/ may know which one it talks to.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from _api_support import built_index, raw

from qa.engine import Engine, UnknownFilterValue
from qa.schema import AskRequest, Filters

WORD = re.compile(r"\w+")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["files", "postgresql"])
def engine(request) -> Engine:
    if request.param == "files":
        return Engine.load(built_index())
    return Engine.load(request.getfixturevalue("demo_pg_url"), None)


def ask(engine: Engine, question: str, **kw):
    return engine.ask(AskRequest(question=question, **kw))


def test_finds_the_passage_that_answers(engine):
    r = ask(engine, "Which manifesto of 1932 called for Stalin's removal?", top_k=5)
    assert r.answered
    assert any("Ryutin" in p.text for p in r.passages[:3])
    r = ask(engine, "Who wrote the essay There Is No Communism in Russia?", top_k=5)
    assert "Goldman" in r.passages[0].text


def test_every_returned_word_is_verbatim_and_highlights_point_into_the_passage(engine):
    r = ask(engine, "How did the Chinese communists judge Stalin's merits and mistakes?", top_k=10)
    for p in r.passages:
        span = raw(p.source.file)[p.source.start : p.source.end]
        words = iter(w.lower() for w in WORD.findall(span))
        assert all(any(w == x for x in words) for w in (w.lower() for w in WORD.findall(p.text)))
        assert p.highlights
        for h in p.highlights:
            assert p.source.start <= h.start < h.end <= p.source.end
            assert h.text and h.text in p.text
        assert p.citation.text and p.citation.csl["title"]


def test_the_highlight_states_the_kind_of_answer_asked(engine):
    """For "when", the sentence with the date; for "how many", the one with the number (qa/answer_type.py):
    without it, "At that time, who wanted Stalin to die" outscored "Stalin died in 1953"."""
    r = ask(engine, "When did Stalin die?", top_k=10)
    found = [p for p in r.passages if "Stalin died in 1953" in p.text]
    assert found and all("1953" in p.highlights[0].text for p in found)
    r = ask(engine, "How many people died in the Great Purge?", top_k=10)
    found = [p for p in r.passages if "247,157" in p.text]  # two versions of the article hold it
    assert found and all("247,157" in p.highlights[0].text for p in found)


def test_answer_types_are_read_from_the_question_and_the_sentence():
    from qa.answer_type import DATE, QUANTITY, asked, gives

    assert asked("When did Stalin die?") == DATE and asked("In what year was the plan launched?") == DATE
    assert asked("How many kulaks were deported?") == QUANTITY and asked("Who wrote the essay?") is None
    assert gives("Stalin died in 1953.", DATE) and gives("It began on 5 March.", DATE)
    assert not gives("Stalin died.", DATE) and not gives("He died in 1953.", QUANTITY)
    assert gives("Some 700,000 people were shot.", QUANTITY) and gives("thirteen volumes", QUANTITY)
    assert not gives("anything", None)


def test_abstains_off_topic_and_on_facts_the_corpus_lacks(engine):
    for question in ("What is the boiling point of mercury at sea level?", "What vaccine did Stalin receive in 1950?"):
        r = ask(engine, question, top_k=5)
        assert not r.answered, question
        assert r.reason
        assert r.passages and not any(p.supports_answer for p in r.passages)  # nearest passages, marked


def test_support_is_per_passage_an_unrelated_one_does_not_support(engine):
    from qa.tuning import SUPPORT

    r = ask(engine, "Which manifesto of 1932 called for Stalin's removal?", top_k=10)
    assert r.answered and r.reason_code == "answered"
    assert r.passages[0].supports_answer and "Ryutin" in r.passages[0].text
    assert not all(p.supports_answer for p in r.passages)  # the rest of the top 10 is not all evidence
    for p in r.passages:
        assert 0 <= p.support <= 1 and p.supports_answer == (p.support >= SUPPORT.threshold)


def test_a_misspelled_question_answers_like_the_correct_one(engine):
    right = ask(engine, "Was Stalin's industrialization a success?", top_k=5)
    typos = ask(engine, "Was Stalin's industrializaton a sucess?", top_k=5)
    assert right.answered and typos.answered


def test_how_many_needs_a_sentence_that_gives_the_number(engine):
    # Kursk is in the corpus, but no sentence counts anything there.
    r = ask(engine, "How many tanks did the Red Army lose at Kursk?", top_k=5)
    assert not r.answered and "number" in r.reason
    r = ask(engine, "How many volumes of Stalin's works had appeared when publication stopped?", top_k=5)
    assert r.answered and "thirteen volumes" in r.passages[0].text


def test_names_match_other_spellings_the_collection_uses(engine):
    # the CPC statement spells him "Khrushchov"; the Wikipedia articles "Khrushchev"
    assert "khrushchov" in engine.retriever.spelling_variants("What did Khrushchev tell the Hungarians?")
    # other forms of one word are the stemmer's business, not spelling variants
    assert engine.retriever.spelling_variants("Was Stalinism a break with Leninism or its Uprisings?") == []
    r = ask(engine, "What did the Chinese accuse Khrushchev of when he attacked Stalin?", top_k=5)
    assert any("Khrushchov" in p.text for p in r.passages[:3])


def test_states_quantity_ignores_years():
    from qa.abstain import states_quantity

    assert states_quantity("nearly 700,000 people (353,074 in 1937)")
    assert states_quantity("of which thirteen volumes had already appeared")
    assert states_quantity("90% of all generals were killed")
    assert not states_quantity("In 1937 and 1938 the purge reached its height.")
    assert not states_quantity("one of the defeats at Stalingrad and Kursk")


def test_near_copies_never_fill_the_results(engine):
    r = ask(engine, "Who proposed replacing Long Live Leninism with Long Live Stalinism?", top_k=10)
    cited = {s.file[:3] for p in r.passages if "Long Live Stalinism" in p.text for s in [p.source, *p.also_in]}
    assert cited >= {"000", "001", "002"}  # every version is cited, none is listed twice
    vectors = engine.index.passage_vectors([engine.index.position[p.id] for p in r.passages])
    sims = vectors @ vectors.T - np.eye(len(vectors)) * 2
    assert sims.max() < 0.95


def test_contested_question_shows_several_sides_and_the_switch_turns_it_off(engine):
    question = "Was Stalin a faithful successor of Lenin or did he betray Leninism?"
    r = ask(engine, question, top_k=10)
    assert len(r.viewpoints) >= 2
    assert {pid for g in r.viewpoints for pid in g.passages} == {p.id for p in r.passages}
    by_id = {p.id: p for p in r.passages}
    for g in r.viewpoints:  # a group's label is its passages' label, and filters by it
        assert {by_id[pid].viewpoint.label for pid in g.passages} == {g.label}
        engine.check_filters(Filters(viewpoint=[g.label]))
        again = ask(engine, r.question, top_k=5, filters=Filters(viewpoint=[g.label]))
        assert again.passages and {p.viewpoint.label for p in again.passages} == {g.label}
    for g in r.viewpoints:  # a group's holders hold its viewpoint: no reported holder known to hold another
        assert all(engine.known_holders.get(h, g.label) == g.label for h in g.holders)
    assert r.facets["viewpoint"] and r.facets["holder"]
    plain = ask(engine, question, top_k=10, diversify=False)
    scores = [p.score for p in plain.passages]
    assert scores == sorted(scores, reverse=True)


def test_attributions_name_holders_at_both_levels(engine):
    r = ask(engine, "What did the Chinese statement say Khrushchov called Stalin?", top_k=5)
    cpc = next(p for p in r.passages if p.source.work == "cpc-question-of-stalin-1963")
    holders = {a.holder: a for a in cpc.attributions}
    assert holders["Communist Party of China"].level == "author"
    reported = [a for a in cpc.attributions if a.level == "reported"]
    assert reported and all(cpc.source.start <= a.start < a.end <= cpc.source.end for a in reported)


def test_filters_restrict_and_unknown_values_are_refused(engine):
    r = ask(engine, "What did Stalin achieve?", top_k=5, filters=Filters(work=["franklin-essential-stalin-1973"]))
    assert {p.source.work for p in r.passages} == {"franklin-essential-stalin-1973"}
    r = ask(engine, "What did Stalin achieve?", top_k=5, filters=Filters(year_from=1960, year_to=1980))
    assert all(1960 <= p.source.year <= 1980 for p in r.passages)
    r = ask(engine, "What did Stalin achieve?", top_k=5, filters=Filters(holder=["H. Bruce Franklin"]))
    assert {p.source.work for p in r.passages} == {"franklin-essential-stalin-1973"}
    with pytest.raises(UnknownFilterValue):
        ask(engine, "What did Stalin achieve?", filters=Filters(viewpoint=["no-such-label"]))


def test_passage_in_context(engine):
    some = engine.index.passages[10]
    ctx = engine.passage(some.id, context=1)
    assert ctx["passage"]["id"] == some.id
    assert all(p["source"]["work"] == some.work for p in ctx["before"] + ctx["after"])
    assert engine.passage("no-such-id") is None


def test_context_is_the_mean_score_of_the_passages_beside_it_in_its_work(engine):
    passages, retriever = engine.index.passages, engine.retriever
    sizes = Counter(p.work for p in passages)
    for i, p in enumerate(passages):
        near = retriever.neighbours(i)
        assert all(abs(n - i) == 1 and passages[n].work == p.work for n in near)
        assert near or sizes[p.work] == 1
    question = "Why did Stalin purge the Red Army's officers?"
    qvec = engine.index.encode_query(question)
    cands = retriever.candidates(question, qvec, 60, None)
    retriever.score(question, qvec, cands, engine.weights)
    by_pos = {c.pos: c for c in cands}
    fused = {c.pos: c.score - engine.weights.context * c.context for c in cands}
    checked = 0
    for c in cands:
        near = retriever.neighbours(c.pos)
        if near and all(n in by_pos for n in near):
            assert c.context == pytest.approx(sum(fused[n] for n in near) / len(near))
            checked += 1
    assert checked


def test_terminal_output_shows_control_and_bidi_characters_instead_of_obeying_them(engine):
    from api.render import render_answer

    r = ask(engine, "Which manifesto of 1932 called for Stalin's removal?", top_k=2)
    hostile = "\x1b]0;pwned\x07\x1b[2J\u202eevil\x1b]8;;http://x.example\x1b\\link\r"
    p = r.passages[0]
    p = p.model_copy(update={"text": p.text + hostile, "highlights": []})
    p.source = p.source.model_copy(update={"title": "T" + hostile})
    shown = render_answer(r.model_copy(update={"passages": [p]}), full=True, color=True)
    assert not any(c in shown for c in "\x07\r\u202e") and "\x1b]" not in shown and "\x1b[2J" not in shown
    assert "\\u001b]0;pwned" in shown and "\\u202eevil" in shown
    assert hostile in p.text  # the JSON answer keeps the text verbatim


def test_group_holders_are_its_voices_and_known_holders_of_it():

    from qa.schema import Attribution, Citation, PassageOut, Source, ViewpointOut
    from qa.viewpoints import groups

    def passage(pid: str, label: str, holders: list[tuple[str, str]]) -> PassageOut:
        src = Source(file="f", start=0, end=1, work="w", title="t", author="a", year=None, section=None, kind="k")
        atts = [Attribution(holder=h, cue="c", start=0, end=1, level=level) for h, level in holders]
        return PassageOut(
            id=pid, rank=1, score=1.0, supports_answer=True, text="x", highlights=[], source=src, also_in=[],
            viewpoint=ViewpointOut(label=label), attributions=atts, citation=Citation(text="x", csl={}),
        )  # fmt: skip

    ps = [
        passage("p1", "left", [("Stalin", "reported"), ("Trotsky", "reported"), ("Wikipedia", "author")]),
        passage("p2", "left", [("Bukharin", "reported")]),
    ]
    (g,) = groups(ps, {"left": "Left critique"}, {"Leon Trotsky": "left"})
    assert (g.label, g.description, g.passages) == ("left", "Left critique", ["p1", "p2"])
    assert g.holders == ["Trotsky", "Wikipedia"]  # Stalin's and Bukharin's views are only reported there
