"""Viewpoints: label each passage's position, group an answer by position, and cover every side.

A passage's position is that of the known holder whose view it reports (the manifest's [holders]), else
that of its work (the manifest's viewpoint label). Labels only ever come from the manifest.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from corpus.model import Passage, Work
from qa.schema import PassageOut, ViewpointGroup

if TYPE_CHECKING:
    from qa.engine import Engine
    from qa.retrieve import Candidate

RELEVANT_SHARE = 0.8  # a side is brought into the top k only by passages scoring this close to the best


def _surname(name: str) -> str:
    return name.split()[-1].lower().rstrip("s") if name.split() else ""


def positions(passages: list[Passage], works: dict[str, Work], attributions: dict, known_holders: dict) -> list[str]:
    """Each passage's position label, computed once when the engine loads."""
    known = {_surname(h): label for h, label in known_holders.items()}

    def label(p: Passage) -> str:
        reported = (known.get(_surname(a["holder"])) for a in attributions.get(p.id, []))
        return next((x for x in reported if x), works[p.work].viewpoint_label)

    return [label(p) for p in passages]


def position(engine: Engine, pos: int) -> str:
    return engine.positions[pos]


def diversify(ranked: list[Candidate], engine: Engine, k: int, mode: str = "quota") -> list[Candidate]:
    """Reorder the top of the ranking so that every side the corpus holds on the question shows.

    "quota": every side with a relevant passage gets at least one of the top k places.
    "mmr": maximal marginal relevance, penalising a side already shown and near-identical content.
    """
    if mode == "mmr":
        return _mmr(ranked, engine, k)
    return _quota(ranked, engine, k)


def _quota(ranked: list[Candidate], engine: Engine, k: int) -> list[Candidate]:
    """Each side missing from the top k takes the place of the lowest-ranked passage of the side that
    has the most, if it has a passage scoring close enough to the best."""
    top = ranked[:k]
    if not top or len(ranked) <= k:
        return top
    floor = RELEVANT_SHARE * top[0].score
    sides = Counter(position(engine, c.pos) for c in top)
    for c in ranked[k:]:
        if c.score < floor:
            break
        side = position(engine, c.pos)
        if side in sides:
            continue
        crowded = max(sides, key=lambda s: sides[s])
        if sides[crowded] < 2:
            break
        drop = max(i for i, t in enumerate(top) if position(engine, t.pos) == crowded)
        top.pop(drop)
        top.append(c)
        sides[crowded] -= 1
        sides[side] += 1
    return top


MMR_POOL = 40
MMR_SIDE_PENALTY = 0.04
MMR_CONTENT_PENALTY = 0.3
MMR_KEEP = 3  # the most relevant passages keep their places


def _mmr(ranked: list[Candidate], engine: Engine, k: int) -> list[Candidate]:
    pool = ranked[:MMR_POOL]
    if len(pool) <= MMR_KEEP:
        return pool[:k]
    vecs = engine.index.passage_vectors([c.pos for c in pool])
    sides = [position(engine, c.pos) for c in pool]
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


def groups(passages: list[PassageOut], engine: Engine) -> list[ViewpointGroup]:
    """The passages grouped by their own viewpoint label (their work's voice; views they only report are in their
    attributions), so a group's label is its passages' label and a valid `viewpoint` filter value.

    A group's holders are those who hold its viewpoint: its works' own voices, and the holders the passages report
    whose known position (the manifest's [holders]) is that viewpoint. Other reported holders stay on their
    passages ("Views held by"): an anti-Stalinist text that reports Stalin's claims does not make Stalin a holder
    of the anti-Stalinist view."""
    known = {_surname(h): label for h, label in (getattr(engine, "known_holders", None) or {}).items()}
    out: dict[str, ViewpointGroup] = {}
    for p in passages:
        label = p.viewpoint.label
        description = engine.viewpoint_vocab.get(label, "") or p.viewpoint.description
        g = out.setdefault(label, ViewpointGroup(label=label, description=description, holders=[], passages=[]))
        g.passages.append(p.id)
        for a in p.attributions:
            holds = a.level == "author" or known.get(_surname(a.holder)) == label
            if holds and a.holder not in g.holders:
                g.holders.append(a.holder)
    return list(out.values())


def facets(passages: list[PassageOut]) -> dict[str, dict[str, int]]:
    return {
        "viewpoint": dict(Counter(p.viewpoint.label for p in passages)),
        "holder": dict(Counter(a.holder for p in passages for a in p.attributions)),
        "work": dict(Counter(p.source.work for p in passages)),
    }
