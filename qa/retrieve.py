"""Hybrid retrieval: dense and lexical candidates, fused, then re-ranked with sentence-level evidence.

No cross-encoder ships its weights inside a PyPI package, so the re-ranker combines signals measured on the
dev set (see the README's ablation): passage cosine, best-sentence cosine, BM25, query-term coverage,
whether the passage reports the view of someone the question names, and the same score of the passages
beside it (its context).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from rapidfuzz import fuzz

from index import layout
from index.store import SearchIndex
from qa.tuning import Weights

WORD = re.compile(r"\w+")
QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how did does do was were is are according said say says many much".split()
)


@lru_cache(maxsize=1024)  # ranking, abstention and highlights all ask for the same question's terms
def query_terms(question: str) -> tuple[str, ...]:
    """The question's stemmed content terms, in order, without question words."""
    words = [w for w in question.lower().split() if w.strip("?.,!'\"") not in QUESTION_WORDS]
    return tuple(dict.fromkeys(layout.bm25_tokenize([" ".join(words)], return_ids=False)[0]))


@dataclass
class Candidate:
    pos: int  # passage position in the index
    dense: float = 0.0  # cosine of question and passage
    lexical: float = 0.0  # BM25, normalized by the best lexical score of this question
    sentence: float = 0.0  # best cosine of question and one sentence of the passage
    coverage: float = 0.0  # IDF-weighted share of the question's terms present in the passage
    holder: float = 0.0  # 1 when the question names a holder of a view this passage reports
    context: float = 0.0  # mean fused score of the passages beside it in the same work
    score: float = 0.0


# A note is read with the passage that cites its marker: it never ranks above it (at most this much below it).
NOTE_BELOW = 1e-3
VARIANT_MIN_LEN = 7  # shorter words have too many near neighbours to call one a respelling
VARIANT_RATIO = 85  # rapidfuzz ratio: one or two letters apart in a name of seven or more
DERIVATION = re.compile(r"(?:ism|ist|ian|ic|ed|ing|al)?s?$")


def _forms_of_one_word(a: str, b: str) -> bool:
    """Inflections ("Uprisings") and derivations ("Stalinist"): not spellings of one name."""
    return layout.stem(a) == layout.stem(b) or DERIVATION.sub("", a) == DERIVATION.sub("", b)


class Retriever:
    def __init__(
        self,
        index: SearchIndex,
        sentence_vectors: np.ndarray,
        sentence_owner: np.ndarray,
        sentences: list[str],
        holders: list[list[str]],
    ):
        self.index = index
        # Names of whoever's views each passage reports: "What did Bukharin say…" favours Bukharin's.
        # A holder is matched by its head word ("Deutscher", "aides"), not a possessor ("Tito's aides").
        words = [
            frozenset(ws[-1] for h in hs if len(ws := WORD.findall(h.lower())) and len(ws[-1]) > 2) for hs in holders
        ]
        counts = Counter(w for ws in words for w in ws)
        # Names held by many passages ("Stalin", "Party") say nothing about which one is meant. "Many" is a share
        # of the running text's passages: a work's notes and captions (short, few views) do not make names rarer.
        body = sum(p.kind == "body" for p in index.passages)
        rare = {w for w, n in counts.items() if n <= max(3, 0.02 * body)}
        self.holder_words = [ws & rare for ws in words]
        sentence_tokens = layout.bm25_tokenize(sentences, return_ids=False, closed_compounds=True)
        self.sentence_terms = [frozenset(t) for t in sentence_tokens]
        self.sentence_texts = sentences
        self.words = frozenset(w.lower() for s in sentences for w in WORD.findall(s))  # unstemmed vocabulary
        self.by_initial: dict[str, list[str]] = {}  # for typo-tolerant look-ups
        self.by_prefix: dict[str, list[str]] = {}  # for spelling variants of long names
        for w in sorted(self.words):
            self.by_initial.setdefault(w[:1], []).append(w)
            if len(w) >= VARIANT_MIN_LEN:
                self.by_prefix.setdefault(w[:4], []).append(w)
        self.sentence_vectors = sentence_vectors  # all sentences of all passages, normalized
        self.sentence_owner = sentence_owner  # passage position of each sentence
        self.sentence_start = np.searchsorted(sentence_owner, np.arange(len(index.passages)))
        tokens = layout.bm25_tokenize([p.text for p in index.passages], return_ids=False, closed_compounds=True)
        self.passage_terms = [frozenset(t) for t in tokens]
        self.df = Counter(t for terms in self.passage_terms for t in terms)
        self.n = len(index.passages)
        at = index.position
        self.cited_by = [[at[i] for i in p.cited_by if i in at] for p in index.passages]  # a note's citing passages
        # a passage's notes: (position of the note passage, raw offset of its marker in this passage)
        self.marked = [
            [(at[n.passage], x) for n in p.notes if n.passage in at for x in n.cited_at if p.start <= x <= p.end]
            for p in index.passages
        ]
        self._idf = {t: math.log(1 + self.n / (1 + df)) for t, df in self.df.items()}
        self._idf_unseen = math.log(1 + self.n)
        self._weights_cache: dict[tuple[str, ...], tuple[tuple[tuple[str, float], ...], float]] = {}

    def spelling_variants(self, question: str) -> list[str]:
        """Other spellings the collection uses for the question's long capitalised words: transliterated
        names differ between sources ("Khrushchev" / "Khrushchov", "Zinoviev" / "Zinovyev")."""
        out = []
        names = {w.lower() for w in WORD.findall(question) if len(w) >= VARIANT_MIN_LEN and w[0].isupper()}
        for w in names:
            for v in self.by_prefix.get(w[:4], ()):
                if abs(len(v) - len(w)) <= 2 and not _forms_of_one_word(v, w) and fuzz.ratio(v, w) >= VARIANT_RATIO:
                    out.append(v)
        return out

    def query_terms(self, question: str) -> tuple[str, ...]:
        return query_terms(question)

    def idf(self, term: str) -> float:
        return self._idf.get(term, self._idf_unseen)

    def coverage(self, terms: tuple[str, ...], have: frozenset[str] | set[str]) -> float:
        """IDF-weighted share of the question's terms found in `have`: rare terms count most."""
        weights, total = self._term_weights(terms)
        return sum(w for t, w in weights if t in have) / total

    def _term_weights(self, terms: tuple[str, ...]) -> tuple[tuple[tuple[str, float], ...], float]:
        """Each term's IDF and their sum, once per question (coverage is asked of hundreds of texts)."""
        if terms not in self._weights_cache:
            if len(self._weights_cache) > 1024:
                self._weights_cache.clear()
            weights = tuple((t, self.idf(t)) for t in terms)
            self._weights_cache[terms] = weights, (sum(w for _, w in weights) or 1.0)
        return self._weights_cache[terms]

    def candidates(self, question: str, qvec: np.ndarray, k: int, allowed: np.ndarray | None) -> list[Candidate]:
        pool = k if allowed is None else self.n  # filters: score everything, keep what is allowed
        d_scores, d_pos = self.index.dense_search(qvec, pool)
        l_scores, l_pos = self.index.lexical_search(" ".join([question, *self.spelling_variants(question)]), pool)
        cands: dict[int, Candidate] = {}
        for s, p in zip(d_scores[0], d_pos[0], strict=True):
            if p >= 0 and (allowed is None or allowed[p]):
                c = cands.setdefault(int(p), Candidate(int(p)))
                c.dense = float(s)
        top_lex = float(l_scores[0]) if len(l_scores) else 1.0
        for s, p in zip(l_scores, l_pos, strict=True):
            if allowed is None or allowed[p]:
                c = cands.setdefault(int(p), Candidate(int(p)))
                c.lexical = float(s) / top_lex
        return list(cands.values())

    def score(self, question: str, qvec: np.ndarray, cands: list[Candidate], w: Weights) -> None:
        self._fuse(question, qvec, cands, w)  # the features are needed by abstention and highlights too
        self._add_context(question, qvec, cands, w)
        self._place_notes(question, qvec, cands, w)

    def _place_notes(self, question: str, qvec: np.ndarray, cands: list[Candidate], w: Weights) -> None:
        """A note is read with the passage whose text carries its marker: it never ranks above that passage. A
        bare reference that names the question's words ("N. S. Khrushchov, Speech at the … Rally, July 19, 1963")
        says where a text comes from, not what it says: the passage citing it does. And the note marked after
        the sentence that answers best in one of the best passages ("… describes Stalin's personality’[2]") comes
        right below that passage, when it is about the question at all: it says where the answer comes from."""
        pulled = self._notes_of_answers(question, qvec, cands, w)
        notes = [c for c in cands if self.cited_by[c.pos]]
        if not notes:
            return
        have = {c.pos for c in cands}
        extra = [Candidate(b) for b in sorted({b for c in notes for b in self.cited_by[c.pos]} - have)]
        if extra:  # citing passages outside the pool are scored as the pool is
            self._fuse(question, qvec, extra, w)
            self._add_context(question, qvec, extra, w)
        scores = {c.pos: c.score for c in cands + extra}
        dense = {c.pos: c.dense for c in cands + extra}
        for c in notes:
            c.score = min(c.score, max(scores[b] for b in self.cited_by[c.pos]) - NOTE_BELOW)
            if c.pos in pulled and c.dense >= w.note_share * dense[pulled[c.pos][1]]:
                c.score = max(c.score, pulled[c.pos][0] - NOTE_BELOW)

    def _notes_of_answers(
        self, question: str, qvec: np.ndarray, cands: list[Candidate], w: Weights
    ) -> dict[int, tuple[float, int]]:
        """The notes whose marker follows the best sentence of one of the w.notes_of_top best passages, added to
        the candidates: note position -> (score, position) of the passage whose sentence it follows."""
        out: dict[int, float] = {}
        for c in sorted(cands, key=lambda c: (-c.score, c.pos))[: w.notes_of_top]:
            if not self.marked[c.pos]:
                continue
            p = self.index.passages[c.pos]
            best = int(np.argmax(self.sentence_sims(c.pos, qvec)))
            a = p.sentences[best][0]
            b = p.sentences[best + 1][0] if best + 1 < len(p.sentences) else p.end + 1
            for note, at in self.marked[c.pos]:
                if a <= at < b and (note not in out or out[note][0] < c.score):
                    out[note] = (c.score, c.pos)
        new = [Candidate(n) for n in sorted(out.keys() - {c.pos for c in cands})]
        if new:
            self._fuse(question, qvec, new, w)
            self._add_context(question, qvec, new, w)
            cands += new
        return out

    def _fuse(self, question: str, qvec: np.ndarray, cands: list[Candidate], w: Weights) -> None:
        terms = self.query_terms(question)
        words = set(WORD.findall(question.lower()))
        lexical_only = [c for c in cands if c.dense == 0.0]  # their cosine was not returned by the search
        for c, v in zip(lexical_only, self.index.passage_vectors([c.pos for c in lexical_only]), strict=True):
            c.dense = float(v @ qvec)
        best_sentence = self.best_sentence_sims([c.pos for c in cands], qvec)
        for c, best in zip(cands, best_sentence, strict=True):
            c.holder = float(bool(words & self.holder_words[c.pos]))
            c.sentence = c.dense if np.isnan(best) else float(best)
            c.coverage = self.coverage(terms, self.passage_terms[c.pos])
            c.score = (
                w.dense * c.dense
                + w.sentence * c.sentence
                + w.lexical * c.lexical
                + w.coverage * c.coverage
                + w.holder * c.holder
            )

    def neighbours(self, pos: int) -> list[int]:
        """The passages just before and after passage `pos` in the same work: its context."""
        ps = self.index.passages
        return [n for n in (pos - 1, pos + 1) if 0 <= n < self.n and ps[n].work == ps[pos].work]

    def _add_context(self, question: str, qvec: np.ndarray, cands: list[Candidate], w: Weights) -> None:
        """Passage-context smoothing: a match among relevant neighbours is likelier to be on point than an
        isolated one, since an answer's argument often runs across a passage break. Neighbours outside the
        candidates are scored too (their BM25 is 0: they missed the lexical pool)."""
        if not w.context:
            return
        near = {c.pos: self.neighbours(c.pos) for c in cands}
        beside = [Candidate(n) for n in sorted({n for ns in near.values() for n in ns} - near.keys())]
        self._fuse(question, qvec, beside, w)
        fused = {c.pos: c.score for c in cands + beside}
        for c in cands:
            ns = near[c.pos]
            c.context = sum(fused[n] for n in ns) / len(ns) if ns else 0.0
        for c in cands:  # after all contexts are taken from the fused scores, not from smoothed ones
            c.score += w.context * c.context

    def sentence_range(self, pos: int) -> tuple[int, int]:
        """Rows of passage `pos`'s sentences in sentence_vectors."""
        a = self.sentence_start[pos]
        return a, (self.sentence_start[pos + 1] if pos + 1 < self.n else len(self.sentence_owner))

    def best_sentence_sims(self, positions: list[int], qvec: np.ndarray) -> np.ndarray:
        """For each passage, the best cosine of the question and one of its sentences (NaN if it has none);
        one matrix product over the candidates' sentences instead of one per passage."""
        ranges = [self.sentence_range(p) for p in positions]
        rows = [np.arange(a, b) for a, b in ranges if b > a]
        if not rows:
            return np.full(len(positions), np.nan)
        sims = self.sentence_vectors[np.concatenate(rows)] @ qvec
        starts = np.cumsum([0] + [b - a for a, b in ranges if b > a])[:-1]
        best = iter(np.maximum.reduceat(sims, starts))
        return np.array([next(best) if b > a else np.nan for a, b in ranges])

    def sentence_coverage(self, pos: int, i: int, terms: tuple[str, ...]) -> float:
        """Term coverage of sentence i of passage `pos`."""
        return self.coverage(terms, self.sentence_terms[self.sentence_start[pos] + i])

    def sentence_sims(self, pos: int, qvec: np.ndarray) -> np.ndarray:
        """Cosine of the question and each sentence of passage `pos`."""
        a, b = self.sentence_range(pos)
        return self.sentence_vectors[a:b] @ qvec
