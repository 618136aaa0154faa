"""Ranking variants measured and not shipped, kept here (not in qa/) so the product has one path. Each patches a
loaded engine for bench/eval_inprocess.py; the README's ablation tables give their figures.

- rrf: reciprocal rank fusion of the dense and BM25 lists instead of the fitted convex fusion. Demo dev set,
  2026-12-01: hit@1 0.800, MRR@10 0.870, coverage@10 0.722, against 0.900, 0.932, 0.806 in use.
- mmr: maximal marginal relevance over sides and content instead of the quota of qa/viewpoints.py. Demo dev
  set: coverage@10 0.667 against 0.806, the rest unchanged (PERSPECTRUM unchanged, README).

    python bench/eval_inprocess.py --index INDEX --fusion rrf     # or --diversity mmr
"""

from __future__ import annotations

from collections import Counter

import numpy as np

RRF_K = 60  # the usual constant of reciprocal rank fusion

MMR_POOL = 40
MMR_SIDE_PENALTY = 0.04
MMR_CONTENT_PENALTY = 0.3
MMR_KEEP = 3  # the most relevant passages keep their places


def use_rrf(engine) -> None:
    """Score each candidate by reciprocal rank fusion of its ranks in the dense and BM25 lists."""
    ret = engine.retriever
    candidates, score = ret.candidates, ret.score
    fused: dict[int, float] = {}

    def rrf_candidates(question, qvec, k, allowed):
        cands = candidates(question, qvec, k, allowed)
        fused.clear()
        for signal in ("dense", "lexical"):  # set only for a candidate its retriever listed, until fusion
            listed = sorted((c for c in cands if getattr(c, signal) > 0), key=lambda c: -getattr(c, signal))
            for rank, c in enumerate(listed):
                fused[c.pos] = fused.get(c.pos, 0.0) + 1 / (RRF_K + rank)
        return cands

    def rrf_score(question, qvec, cands, w):
        score(question, qvec, cands, w)
        for c in cands:
            c.score = fused.get(c.pos, 0.0)

    ret.candidates, ret.score = rrf_candidates, rrf_score


def use_mmr(engine) -> None:
    """Diversify the top k by MMR instead of the quota."""
    import qa.viewpoints

    qa.viewpoints.diversify = lambda ranked, labels, k: mmr(ranked, labels, engine.index.passage_vectors, k)


def mmr(ranked, labels: list[str], passage_vectors, k: int):
    pool = ranked[:MMR_POOL]
    if len(pool) <= MMR_KEEP:
        return pool[:k]
    vecs = passage_vectors([c.pos for c in pool])
    sides = [labels[c.pos] for c in pool]
    chosen = list(range(MMR_KEEP))
    rest = list(range(MMR_KEEP, len(pool)))
    while rest and len(chosen) < k:
        shown = Counter(sides[i] for i in chosen)

        def gain(i: int, shown: Counter = shown) -> float:
            similar = float(np.max(vecs[chosen] @ vecs[i]))
            return pool[i].score - MMR_SIDE_PENALTY * shown[sides[i]] - MMR_CONTENT_PENALTY * max(0.0, similar - 0.8)

        best = max(rest, key=gain)
        chosen.append(best)
        rest.remove(best)
    return [pool[i] for i in chosen]
