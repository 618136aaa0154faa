"""Tests for qa.attribution: who holds the views a passage reports.

Check set: tests/data/attribution_cases.jsonl, 53 sentences (or 1-2 sentence spans) copied verbatim
from corpus/ (000, 002, 003, 004), 43 with holders and 10 negatives (people mentioned but no view
attributed); two carry a `context` to resolve a pronoun.
Holder-level scores (holder names compared case-insensitively, leading "the" ignored):

    check set (rules were developed against it)   precision 1.000  recall 0.961  (tp 49, fp 0, fn 2)
    held-out, 18 sentences of corpus/004, labelled before the first run
                                                   precision 1.000  recall 0.800  (first run;
                                                   0.867 after two generic fixes: "believed in",
                                                   all conjoined subjects; now precision 0.929:
                                                   "the position of the Left Opposition" is read
                                                   as the Left Opposition's view)
Sampled over the whole corpus (45 random attributions from ~100-word passages), about 42/45 were
correct holders.  Speed: ~50 passages (~100 words) per CPU-second, parsing dominates.

Issue 13 (holders hold a view) is measured on 240 labelled sentences of two collections by bench/holders.py
(figures in bench/README.md); the cases at the end of this file are the rules it added.

The two check-set misses are "exactly as he claimed" (he = Stalin, resolved to the nearer holder
and deduplicated) and "Churchill, quoted once as saying…".  The thresholds below leave some room
for parser differences between spaCy builds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qa.attribution import find_attributions, load_nlp

CASES_PATH = Path(__file__).parent / "data" / "attribution_cases.jsonl"
MIN_PRECISION = 0.90
MIN_RECALL = 0.85


def _cases():
    with CASES_PATH.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _norm(name: str) -> str:
    name = " ".join(name.replace("\u00ad", "").split()).lower()
    return name[4:] if name.startswith("the ") else name


def _one(text: str, context: str = "") -> list[dict]:
    return find_attributions([text], [context])[0]


@pytest.fixture(scope="module", autouse=True)
def _nlp():
    return load_nlp()


def test_load_nlp_is_cached_and_lean():
    nlp = load_nlp()
    assert nlp is load_nlp()
    assert {"parser", "ner"} <= set(nlp.pipe_names)
    assert "senter" not in nlp.pipe_names


def test_cases_are_verbatim_from_corpus():
    corpus_dir = Path(__file__).resolve().parents[1] / "corpus"
    for case in _cases():
        text = (corpus_dir / case["file"]).read_text(encoding="utf-8")
        assert case["text"] in text, case["id"]
        if case.get("context"):
            assert case["context"] in text, case["id"]


def test_precision_recall_on_case_set():
    cases = _cases()
    results = find_attributions([c["text"] for c in cases], [c.get("context", "") for c in cases])
    tp = fp = fn = 0
    for case, atts in zip(cases, results, strict=True):
        pred = {_norm(a["holder"]) for a in atts}
        gold = {_norm(h) for h in case["holders"]}
        tp += len(pred & gold)
        fp += len(pred - gold)
        fn += len(gold - pred)
    precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    assert precision >= MIN_PRECISION, (precision, recall)
    assert recall >= MIN_RECALL, (precision, recall)


@pytest.mark.parametrize(
    "text, holder, cue",
    [
        (
            'Robert Service writes that "institutionally and ideologically Lenin laid the foundations '
            "for a Stalin [...] but the passage from Leninism to the worse terrors of Stalinism was not "
            'smooth and inevitable."',
            "Robert Service",
            "writes",
        ),
        ("Mao Zedong famously declared that Stalin was 70% good and 30% bad.", "Mao Zedong", "declared"),
        (
            "Stalin blamed the kulaks for inciting reactionary violence against the people during the "
            "implementation of agricultural collectivization.",
            "Stalin",
            "blamed",
        ),
        (
            'Emma Goldman asserted that there was "not the least sign in Soviet Russia even of '
            'authoritarian, State Communism".',
            "Emma Goldman",
            "asserted",
        ),
        (
            "Kristen R. Ghodsee, ethnographer and Professor of Russian and East European Studies at the "
            "University of Pennsylvania, posits that the triumphalist attitudes of Western powers at the "
            "end of the Cold War, and in particular the fixation with linking all socialist political "
            "ideals with the excesses of Stalinism, marginalized the left's response to the fusing of "
            "democracy with neoliberal ideology, which helped undermine the former.",
            "Kristen R. Ghodsee",
            "posits",
        ),
        (
            'Historian David L. Hoffmann sums up the consensus of scholars: "The Stalin cult was a central '
            "element of Stalinism, and",
            "David L. Hoffmann",
            "sums up",
        ),
        ("Khrushchov said, “Ah! If only Stalin had died ten years earlier!”", "Khrushchov", "said"),
    ],
)
def test_holder_first_offsets_point_at_holder(text, holder, cue):
    atts = _one(text)
    assert atts and atts[0]["holder"] == holder
    a = atts[0]
    assert a["cue"] == cue
    span = text[a["start"] : a["end"]]
    assert span.startswith(holder) and span.endswith(cue)


def test_titles_and_descriptors_are_stripped():
    text = (
        "In two Guardian articles in 2002 and 2006, British journalist Seumas Milne wrote that the impact "
        "of the post-Cold War narrative that Stalin and Hitler were twin evils"
    )
    [a] = _one(text)
    assert a["holder"] == "Seumas Milne"
    assert text[a["start"] : a["end"]] == "Seumas Milne wrote"
    [b] = _one('Russian historian Vadim Rogovin writes, "Under Lenin, the freedom to express opinions existed".')
    assert b["holder"] == "Vadim Rogovin"


def test_according_to_frames():
    text = (
        "According to Conquest, the industrial successes were far less than claimed, and the Soviet-style "
        'industrialization was "an anti-innovative dead-end."'
    )
    [a] = _one(text)
    assert (a["holder"], a["cue"]) == ("Conquest", "According to")
    assert text[a["start"] : a["end"]] == "According to Conquest"
    [b] = _one(
        "According to Stalin's secretary, Boris Bazhanov, Stalin was jubilant over Lenin's death while "
        '"publicly putting on the mask of grief".'
    )
    assert b["holder"] == "Boris Bazhanov"


def test_as_x_demonstrates_frame():
    text = (
        "As Raymond Birt convincingly demonstrates, ‘the clinical description of the paranoid almost "
        "perfectly describes Stalin’s personality’"
    )
    [a] = _one(text)
    assert a["holder"] == "Raymond Birt" and a["cue"] == "demonstrates"
    assert text[a["start"] :].startswith("Raymond Birt")


def test_as_x_relates_and_the_view_of_x_frames():
    got = _one(
        "The fall of the Soviet states briefly led to the revival of the anti-Stalinist left, as Traverso "
        "relates: At the beginning we were euphoric. This was the view of Ernest Mandel, for instance: after "
        "many decades of passivity and exclusion, the German proletariat would suddenly return."
    )
    assert [(a["holder"], a["cue"]) for a in got] == [("Traverso", "relates"), ("Ernest Mandel", "view of")]
    [a] = _one("We should bear firmly in mind the words of Comrade Stalin, that as long as encirclement exists…")
    assert a["holder"] == "Stalin"
    # "of" names the view's topic, not its holder, after a possessor or a modifier
    assert _one("Mao’s opinion of Stalin is a little different.") == []
    assert _one("In modern Russia, public opinion of Stalin has improved in recent years.") == []


def test_with_x_noting_and_relative_clause_holders():
    got = _one(
        "Some scholars have argued that Stalin took an active involvement with the construction of the cult of "
        "personality with writers such as Isaac Deutscher and Erik van Ree noting that Stalin had absorbed "
        "elements from the cult of Tsars."
    )
    holders = [a["holder"] for a in got]
    assert {"Isaac Deutscher", "Erik van Ree"} <= set(holders) and "Stalin" not in holders
    got = _one(
        "Yet, other scholars have drawn on primary accounts from Stalin's associates such as Molotov which "
        "suggested he took a more critical and ambivalent attitude towards his cult of personality."
    )
    assert "Molotov" in [a["holder"] for a in got]


def test_stance_idioms_draw_parallels():
    got = _one(
        "Some historians and writers, such as Dietrich Schwanitz, draw parallels between Stalinism and the "
        "economic policy of Tsar Peter the Great."
    )
    assert "Dietrich Schwanitz" in [a["holder"] for a in got]
    assert _one("The artist drew a picture of the Kremlin walls.") == []


def test_see_is_a_view_only_as_see_x_as_y_or_see_that():
    [a] = _one("Benito Mussolini saw Stalinism as having transformed Soviet Bolshevism into a Slavic fascism.")
    assert (a["holder"], a["cue"]) == ("Benito Mussolini", "saw")
    [a] = _one("Stalin, on the other hand, saw that the national liberation movements were key to the revolution.")
    assert a["holder"] == "Stalin"
    assert _one("Let the Soviet people see the secret report which Khrushchev made to the Congress.") == []
    [a] = _one("Khrushchov has maligned Stalin as the greatest dictator in Russian history.")
    assert (a["holder"], a["cue"]) == ("Khrushchov", "maligned")


def test_groups_and_organisations():
    got = _one(
        "Some historians, such as Robert Service, have blamed Stalinist policies, particularly "
        "collectivization, for causing famines such as the Holodomor."
    )
    assert [a["holder"] for a in got] == ["Some historians", "Robert Service"]
    got = _one("Trotskyists argue that the Stalinist Soviet Union was neither socialist nor communist.")
    assert [a["holder"] for a in got] == ["Trotskyists"]
    got = _one(
        "The Communist Party of China has always held that when Comrade Khrushchov completely negated "
        "Stalin on the pretext of “combating the personality cult”, he was quite wrong and had ulterior "
        "motives."
    )
    assert got[0]["holder"] == "Communist Party of China" and got[0]["cue"] == "held"


def test_caption_frame():
    [a] = _one("Bukharin on Stalin's theoretical position, 1928.")
    assert (a["holder"], a["cue"]) == ("Bukharin", "on")


def test_pronoun_resolved_from_context():
    context = "Hoffmann questions whether Stalinist practices of state violence derive from socialist ideology. "
    text = (
        "Placing Stalinism in an international context, he argues that many forms of state "
        "interventionism the Stalinist government used had their origins in the First World War."
    )
    [a] = _one(text, context)
    assert a["holder"] == "Hoffmann" and a["cue"] == "argues"
    assert text[a["start"] : a["end"]] == "he argues"
    # without context the pronoun cannot be resolved, so nothing is returned
    assert _one(text) == []


def test_pronoun_resolved_inside_passage():
    text = (
        "Hoffmann questions whether Stalinist practices of state violence derive from socialist ideology. "
        "Placing Stalinism in an international context, he argues that many forms of state "
        "interventionism were common."
    )
    got = _one(text)
    assert [a["holder"] for a in got] == ["Hoffmann"]  # deduplicated: first mention kept
    assert got[0]["cue"] == "questions" and got[0]["start"] == 0


@pytest.mark.parametrize(
    "text",
    [
        "The dispute did not end until Trotsky was murdered in his Mexican villa in 1940 by Stalinist "
        "assassin Ramón Mercader.",
        "Bolshevik revolutionary Leon Trotsky was exiled by Stalin in February 1929.",
        'But "Stalinism" was used as early as 1937, when Trotsky wrote his pamphlet Stalinism and Bolshevism.',
        "Stalin personally signed 357 proscription lists in 1937 and 1938 that condemned 40,000 people "
        "to execution, about 90% of whom are confirmed to have been shot.",
        "By some estimates, hundreds of thousands of deportees may have died en route.",
        "Trotsky was exiled.",
    ],
)
def test_negatives_give_nothing(text):
    assert _one(text) == []


def test_soft_hyphens_and_offsets():
    text = "Soviet his\u00adtorian Roy Med\u00advedev argues that Stalin betrayed Lenin."
    [a] = _one(text)
    assert a["holder"] == "Roy Medvedev"
    assert text[a["start"] : a["end"]].replace("\u00ad", "") == "Roy Medvedev argues"


def test_batch_shape_and_order():
    texts = [
        "Trotsky was exiled.",
        "Fredric Jameson has said that Stalinism was a success. Robert Conquest disputes that conclusion.",
        "",
    ]
    out = find_attributions(texts)
    assert len(out) == 3 and out[0] == [] and out[2] == []
    assert [a["holder"] for a in out[1]] == ["Fredric Jameson", "Robert Conquest"]
    assert out[1][0]["start"] < out[1][1]["start"]
    for a in out[1]:
        assert set(a) == {"holder", "cue", "start", "end"}


# --- issue 13: holders hold a view (bench/holders.py measures it on 200 labelled sentences) ---------------------
@pytest.mark.parametrize(
    "text",
    [
        # places and organisations as actors of events, not sources of a view
        "The following day, Japan, which had wisely decided against renewing their invasion of the Soviet Union, "
        "attacked Pearl Harbor.",
        "In 1672 the French attacked the Dutch Republic.",
        "The Soviets agreed to purchase $13 million worth of automobiles and parts, while Ford agreed to give "
        "technical assistance until 1938.",
        # a name given is no judgement
        'Lake Constance consists of three bodies of water: the Obersee ("upper lake"), the Untersee ("lower '
        'lake"), and a connecting stretch of the Rhine, called the Seerhein ("Lake Rhine").',
        # common nouns that name no one
        "Stalin consolidated power in the 1930s with a Great Purge of the party that claimed to expel opportunists.",
        "On Thursday, people were reporting that BSkyB had either cancelled or rescheduled its installations.",
        "Many people believe that Stalin was a great leader.",
        "The same people who praised him later denounced him.",
        "A study found that the famine killed millions.",
    ],
)
def test_places_actors_names_and_bare_nouns_hold_no_view(text):
    assert _one(text) == []


@pytest.mark.parametrize(
    "text, holders",
    [
        # a polity or an organisation holds a view as the subject of a reporting or stance verb
        ("China argued that the treaty was unequal.", ["China"]),
        ("The Ukrainian government argued that the famine was a genocide.", ["Ukrainian government"]),
        ("Most other member states have expressed similar reservations.", ["Most other member states"]),
        (
            "The early United States expressed its opposition to Imperialism, through policies such as the Monroe "
            "Doctrine.",
            ["United States"],
        ),
        # a common noun named by its modifier
        (
            "The great Soviet people and the revolutionary people of the whole world completely disagree with this "
            "slander!",
            ["great Soviet people"],
        ),
        ("A 2019 Levada Center poll showed that support for Stalin rose.", ["2019 Levada Center poll"]),
        # frames
        ("Socialism, as Stalin saw more keenly than anybody before, is merely a transitional stage.", ["Stalin"]),
        (
            "Opponents of this view include revisionist historians and many dissident Soviet historians, including "
            "Roy Medvedev, who argues that Stalin acted in defiance of Lenin.",
            ["revisionist historians", "many dissident Soviet historians", "Roy Medvedev"],
        ),
        (
            "Political geographers such as Friedrich Ratzel of Germany and Halford Mackinder of Britain also "
            "supported imperialism.",
            ["Political geographers", "Friedrich Ratzel", "Halford Mackinder"],
        ),
        # control: who believes, who says
        (
            "Britain's disregard for Soviet policy led Stalin to believe that a treaty with Germany was preferable.",
            ["Stalin"],
        ),
        ("Stalin cabled him to say that Eden's proposal was an important document.", ["Stalin"]),
    ],
)
def test_holders_of_views(text, holders):
    assert [a["holder"] for a in _one(text)] == holders


@pytest.mark.parametrize(
    "text, holder",
    [
        # he/they go to the subject of the clause that governs them, not to the last name mentioned
        (
            "Khrushchev also revealed to the congress the truth behind Stalin's methods of repression. In addition, "
            'he explained that Stalin had rounded up "thousands of people".',
            "Khrushchev",
        ),
        (
            "In launching the combat against the personality cult, the leaders of the CPSU are not out to restore "
            "what they call “the Leninist standards of Party life”.",
            "leaders of the CPSU",
        ),
        (
            "In his dispute with Trotsky, Stalin de-emphasized the role of workers in advanced capitalist countries "
            '(e.g., he considered the U.S. working class "bourgeoisified" labor aristocracy).',
            "Stalin",
        ),
        (
            "In the United States, Max Shachtman argued that the Soviet Union had evolved to a new mode of production "
            'he called "bureaucratic collectivism".',
            "Max Shachtman",
        ),
    ],
)
def test_pronouns_resolve_to_the_governing_subject(text, holder):
    assert {a["holder"] for a in _one(text)} == {holder}
