"""Viewpoints: label each passage with the viewpoint it expresses, group an answer by viewpoint, and cover every
side.

A passage's viewpoint label is that of the known holder whose view it reports (the manifest's [holders]), else
that of its work (the manifest's viewpoint label). Labels only ever come from the manifest. This module takes
data (labels, the manifest's vocabularies), not the engine.
"""

from __future__ import annotations

from collections import Counter

from corpus.model import Passage, Work
from qa.retrieve import Candidate
from qa.schema import PassageOut, ViewpointGroup
from qa.tuning import RELEVANT_SHARE


def _surname(name: str) -> str:
    return name.split()[-1].lower().rstrip("s") if name.split() else ""


def labels(passages: list[Passage], works: dict[str, Work], attributions: dict, known_holders: dict) -> list[str]:
    """Each passage's viewpoint label, by passage position, computed once when the engine loads."""
    known = {_surname(h): label for h, label in known_holders.items()}

    def label(p: Passage) -> str:
        reported = (known.get(_surname(a["holder"])) for a in attributions.get(p.id, []))
        return next((x for x in reported if x), works[p.work].viewpoint_label)

    return [label(p) for p in passages]


def diversify(ranked: list[Candidate], viewpoint_labels: list[str], k: int) -> list[Candidate]:
    """The top k of the ranking, reordered so that every side the corpus holds on the question shows: each side
    missing from the top k takes the place of the lowest-ranked passage of the side that has the most, if it has
    a passage scoring close enough to the best. (MMR over sides and content was measured worse: bench/ablations.py.)"""
    top = ranked[:k]
    if not top or len(ranked) <= k:
        return top
    floor = RELEVANT_SHARE * top[0].score
    sides = Counter(viewpoint_labels[c.pos] for c in top)
    for c in ranked[k:]:
        if c.score < floor:
            break
        side = viewpoint_labels[c.pos]
        if side in sides:
            continue
        crowded = max(sides, key=lambda s: sides[s])
        if sides[crowded] < 2:
            break
        drop = max(i for i, t in enumerate(top) if viewpoint_labels[t.pos] == crowded)
        top.pop(drop)
        top.append(c)
        sides[crowded] -= 1
        sides[side] += 1
    return top


def groups(
    passages: list[PassageOut], viewpoint_vocab: dict[str, str], known_holders: dict[str, str]
) -> list[ViewpointGroup]:
    """The passages grouped by their own viewpoint label (their work's voice; views they only report are in their
    attributions), so a group's label is its passages' label and a valid `viewpoint` filter value.

    A group's holders are those who hold its viewpoint: its works' own voices, and the holders the passages report
    whose known viewpoint (the manifest's [holders]) is that viewpoint. Other reported holders stay on their
    passages ("Views held by"): an anti-Stalinist text that reports Stalin's claims does not make Stalin a holder
    of the anti-Stalinist view."""
    known = {_surname(h): label for h, label in known_holders.items()}
    out: dict[str, ViewpointGroup] = {}
    for p in passages:
        label = p.viewpoint.label
        description = viewpoint_vocab.get(label, "") or p.viewpoint.description
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
