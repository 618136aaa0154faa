"""The question-answering engine: retrieval, ranking, highlights, attribution, viewpoints and abstention.

Building the index it asks is qa/build.py's."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from corpus.ingest import CORPUS_DIR
from corpus.model import Passage, Work
from index import stores
from index.store import IndexLoadError, SearchIndex
from qa import abstain, answer_type, support, viewpoints
from qa.citation import make_citation
from qa.retrieve import Candidate, Retriever
from qa.schema import (
    AskRequest,
    AskResponse,
    Attribution,
    Filters,
    Highlight,
    NoteOut,
    PassageOut,
    Source,
    SpanOut,
    ViewpointOut,
)
from qa.tuning import HIGHLIGHT, SUPPORT, HighlightWeights, Weights

log = logging.getLogger(__name__)
POOL = 60  # candidates taken from each retriever before re-ranking
COPY_COSINE = 0.95  # passages this similar are versions of one text
REQUIRED_EXTRAS = ("sentence_owner", "sentence_texts", "sentence_spans", "attributions")


class UnknownFilterValue(ValueError):
    def __init__(self, field: str, value: object):
        super().__init__(f"unknown value for filter {field!r}: {value!r}")
        self.field, self.value = field, value


class Engine:
    def __init__(self, index: SearchIndex, weights: Weights | None = None):
        missing = [k for k in REQUIRED_EXTRAS if index.extra(k) is None] + (
            ["sentence_vectors"] if index.array("sentence_vectors") is None else []
        )
        if missing:
            raise IndexLoadError(f"the index lacks {', '.join(missing)} (built by an older version)", index.path)
        self.index = index
        self.weights = weights or Weights()
        vectors = np.asarray(index.array("sentence_vectors"), dtype=np.float32)
        owners = np.asarray(index.extra("sentence_owner"), dtype=np.int64)
        self.sentence_spans: list[list[int]] = index.extra("sentence_spans")
        self.attributions: dict[str, list[dict]] = index.extra("attributions") or {}
        reported = [[a["holder"] for a in self.attributions.get(p.id, [])] for p in index.passages]
        self.retriever = Retriever(index, vectors, owners, index.extra("sentence_texts"), reported)
        voices = [self._voices(index.works[p.work]) for p in index.passages]
        self.holders = [set(r) | set(v) for r, v in zip(reported, voices, strict=True)]
        self.viewpoint_vocab: dict[str, str] = index.extra("viewpoints") or {}
        known_holders: dict[str, str] = index.extra("holders") or {}
        self.known_holders = known_holders  # holder -> viewpoint label (the manifest's [holders])
        self.viewpoint_labels = viewpoints.labels(index.passages, index.works, self.attributions, known_holders)
        works = self.works()
        self.filter_values = {
            "work": {w.id for w in works},
            "author": {a for w in works for a in w.authors},
            "kind": {w.kind for w in works},
            "viewpoint": {w.viewpoint_label for w in works},
            "holder": set().union(*self.holders),
        }

    @classmethod
    def load(cls, index_dir: Path | str, corpus_dir: Path | None = CORPUS_DIR) -> Engine:
        """The engine over the index at `index_dir`: a location, a directory or a store (index/stores.py)."""
        from qa.collection import finish_interrupted

        finish_interrupted(index_dir, corpus_dir=corpus_dir)  # an add or remove killed after its commit point
        index = stores.open_index(index_dir, corpus_dir)
        engine = cls(index)
        index.encode_query("warm up")  # load the model now, not on the first question
        return engine

    # --- catalogue -------------------------------------------------------------------------------------
    def works(self) -> list[Work]:
        return list(self.index.works.values())

    def work(self, work_id: str) -> Work | None:
        return self.index.works.get(work_id)

    def passage(self, passage_id: str, context: int = 1) -> dict | None:
        p = self.index.by_id.get(passage_id)
        if p is None:
            return None
        pos = self.index.position[passage_id]
        same = [i for i in range(max(0, pos - context), min(len(self.index), pos + context + 1))]
        same = [i for i in same if self.index.passages[i].work == p.work]
        out = {i: self._passage_out(Candidate(i), rank=0, support=1.0, highlights=[]) for i in same}
        return {
            "passage": out[pos].model_dump(),
            "before": [out[i].model_dump() for i in same if i < pos],
            "after": [out[i].model_dump() for i in same if i > pos],
        }

    def check_filters(self, filters: Filters | None) -> None:
        if filters is None:
            return
        for field, allowed in self.filter_values.items():
            for value in getattr(filters, field) or []:
                if value not in allowed:
                    raise UnknownFilterValue(field, value)

    # --- asking ----------------------------------------------------------------------------------------
    def ask(self, req: AskRequest) -> AskResponse:
        t0 = time.perf_counter()
        self.check_filters(req.filters)
        question = " ".join(req.question.split())
        qvec = self.index.encode_query(question)
        cands, copies = self.rank(question, qvec, self._allowed(req.filters))
        ranked = viewpoints.diversify(cands, self.viewpoint_labels, req.top_k) if req.diversify else cands[: req.top_k]
        probability = self._support(question, cands, ranked)
        answered = any(probability[c.pos] >= SUPPORT.threshold for c in cands[: support.TOP])
        decision = abstain.explain(question, cands, self.retriever, answered)
        terms, kind = self.retriever.query_terms(question), answer_type.asked(question)
        passages = [
            self._passage_out(c, i + 1, probability[c.pos], highlights=self._highlights(c, qvec, terms, kind))
            for i, c in enumerate(ranked)
        ]
        for out, c in zip(passages, ranked, strict=True):
            out.also_in += [SpanOut(**s) for s in copies.get(c.pos, []) if SpanOut(**s) not in out.also_in]
        return AskResponse(
            question=req.question,
            answered=decision.answered,
            reason_code=decision.code,
            reason=decision.reason,
            passages=passages,
            viewpoints=viewpoints.groups(passages, self.viewpoint_vocab, self.known_holders),
            facets=viewpoints.facets(passages),
            took_ms=round((time.perf_counter() - t0) * 1000, 1),
        )

    def _support(self, question: str, cands: list[Candidate], ranked: list[Candidate]) -> dict[int, float]:
        """The probability that each passage supports an answer (qa/support.py), by passage position: for the
        best candidates, which decide whether the question is answered, and for the passages returned."""
        if not cands:
            return {}
        scored = list({c.pos: c for c in cands[: support.TOP] + ranked}.values())
        x = support.features(question, scored, self.retriever, best_score=cands[0].score)
        return dict(zip((c.pos for c in scored), support.probabilities(x, SUPPORT).tolist(), strict=True))

    def rank(self, question: str, qvec: np.ndarray, allowed: np.ndarray | None = None):
        """Candidates by relevance, near-copies folded: (ranked candidates, their copies' spans by position)."""
        cands = self.retriever.candidates(question, qvec, POOL, allowed)
        self.retriever.score(question, qvec, cands, self.weights)
        cands.sort(key=lambda c: (-c.score, c.pos))  # ties (a note capped below the passage citing it) in order
        return self._fold_copies(cands)

    def _fold_copies(self, ranked: list[Candidate]) -> tuple[list[Candidate], dict[int, list[dict]]]:
        """One result per text: a passage that is a near-copy of a better-ranked one (two versions of the
        same article chunked differently) is folded into it and listed in its also_in."""
        ranked = ranked[: 4 * POOL]
        if not ranked:
            return [], {}
        vectors = self.index.passage_vectors([c.pos for c in ranked])
        similar = (vectors @ vectors.T) >= COPY_COSINE
        kept: list[int] = []
        copies: dict[int, list[dict]] = {}
        for i, c in enumerate(ranked):
            twin = next((k for k in kept if similar[k, i]), None)
            if twin is None:
                kept.append(i)
            else:
                p = self.index.passages[c.pos]
                copies.setdefault(ranked[twin].pos, []).append({"file": p.file, "start": p.start, "end": p.end})
        return [ranked[i] for i in kept], copies

    def _allowed(self, f: Filters | None) -> np.ndarray | None:
        if f is None or not any(v is not None for v in f.model_dump().values()):
            return None
        ok = np.ones(len(self.index), dtype=bool)
        for i, p in enumerate(self.index.passages):
            w = self.index.works[p.work]
            ok[i] = (
                (not f.work or w.id in f.work)
                and (not f.author or bool(set(w.authors) & set(f.author)))
                and (not f.kind or w.kind in f.kind)
                and (not f.viewpoint or w.viewpoint_label in f.viewpoint)
                and (not f.holder or bool(self.holders[i] & set(f.holder)))
                and (f.year_from is None or (w.year is not None and w.year >= f.year_from))
                and (f.year_to is None or (w.year is not None and w.year <= f.year_to))
            )
        return ok

    def _highlights(
        self,
        c: Candidate,
        qvec: np.ndarray,
        terms: tuple[str, ...],
        kind: str | None = None,
        w: HighlightWeights = HIGHLIGHT,
    ) -> list[Highlight]:
        """The passage's sentences that best answer the question, best first (raw-file spans): the sentence's
        cosine, plus its share of the question's terms, plus whether it states an answer of the kind asked
        (`kind`, qa/answer_type.py: a date for "when", a number for "how many"), weighted by `w`.

        An adjacent sentence that scores almost as well joins the best one: answers often span two.
        """
        p = self.index.passages[c.pos]
        sims = self.retriever.sentence_sims(c.pos, qvec)
        if not len(sims):
            return [Highlight(start=p.start, end=p.end, text=p.text)]
        first = self.retriever.sentence_start[c.pos]
        coverage = [self.retriever.sentence_coverage(c.pos, i, terms) for i in range(len(sims))]
        scores = sims + w.coverage * np.array(coverage)
        if kind is not None:
            spans = self.sentence_spans[first : first + len(sims)]
            scores += w.answer_type * np.array([answer_type.gives(p.text[a:b], kind) for a, b in spans])
        # A section heading names the topic the question shares; the answer is in the text under it.
        headings = [self._is_heading(p, first + i) for i in range(len(sims))]
        if not all(headings):
            scores[np.array(headings)] = -np.inf
        order = [int(i) for i in np.argsort(-scores)]
        best = order[0]
        groups = [[best]]  # sentence indices of each highlight
        for i in order[1:]:
            if scores[i] < scores[best] - w.margin:
                break
            if abs(i - best) == 1:
                groups[0] = sorted(groups[0] + [i])
            else:
                groups.append([i])
        out = []
        for g in groups[:3]:
            (a, _), (_, b) = p.sentences[g[0]], p.sentences[g[-1]]
            ta, tb = self.sentence_spans[first + g[0]][0], self.sentence_spans[first + g[-1]][1]
            out.append(Highlight(start=a, end=b, text=p.text[ta:tb]))
        return out

    def _is_heading(self, p, sentence: int) -> bool:
        a, b = self.sentence_spans[sentence]
        return p.section is not None and p.text[a:b].strip() == p.section.strip()

    def _passage_out(self, c: Candidate, rank: int, support: float, highlights: list[Highlight]) -> PassageOut:
        p = self.index.passages[c.pos]
        w = self.index.works[p.work]
        return PassageOut(
            id=p.id,
            rank=rank,
            score=round(c.score, 4),
            supports_answer=support >= SUPPORT.threshold,
            support=round(support, 4),
            text=p.text,
            highlights=highlights,
            source=Source(
                file=p.file,
                start=p.start,
                end=p.end,
                work=w.id,
                title=w.title,
                author=w.author,
                year=w.year,
                section=p.section,
                kind=w.kind,
                passage_kind=p.kind,
                page=p.pages[0] if p.pages else None,
                page_end=p.pages[1] if p.pages else None,
            ),  # fmt: skip
            also_in=[SpanOut(file=s.file, start=s.start, end=s.end) for s in p.also_in],
            viewpoint=ViewpointOut(label=w.viewpoint_label, description=w.viewpoint),
            attributions=self._attributions_of(p, w),
            notes=[NoteOut(marker=n.marker, text=n.text, start=n.start, end=n.end, passage=n.passage) for n in p.notes],
            cited_by=list(p.cited_by),
            citation=make_citation(w, p.section, p.start, p.end, p.file, p.pages),
        )

    def _attributions_of(self, p: Passage, w: Work) -> list[Attribution]:
        reported = [Attribution(level="reported", **a) for a in self.attributions.get(p.id, [])]
        own = [Attribution(holder=v, cue="author", start=p.start, end=p.end, level="author") for v in self._voices(w)]
        return reported + own

    @staticmethod
    def _voices(w: Work) -> list[str]:
        """The work's own voice holds whatever a passage says unattributed; an encyclopedia's voice is its
        article's, so it is named with the article."""
        return [f"{w.author}, “{w.title}”"] if "encyclopedia" in w.kind else w.authors
