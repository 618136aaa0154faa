"""Viewpoints: label each passage, group an answer's passages by position, and cover every side."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from qa.schema import PassageOut, ViewpointGroup

if TYPE_CHECKING:
    from qa.engine import Engine
    from qa.retrieve import Candidate


def diversify(ranked: list[Candidate], engine: Engine, k: int) -> list[Candidate]:
    return ranked[:k]


def groups(passages: list[PassageOut], engine: Engine) -> list[ViewpointGroup]:
    out: dict[str, ViewpointGroup] = {}
    for p in passages:
        label = p.viewpoint.label
        g = out.setdefault(
            label,
            ViewpointGroup(label=label, description=engine.viewpoint_vocab.get(label, ""), holders=[], passages=[]),
        )
        g.passages.append(p.id)
        for a in p.attributions:
            if a.holder not in g.holders:
                g.holders.append(a.holder)
    return list(out.values())


def facets(passages: list[PassageOut]) -> dict[str, dict[str, int]]:
    return {
        "viewpoint": dict(Counter(p.viewpoint.label for p in passages)),
        "holder": dict(Counter(a.holder for p in passages for a in p.attributions)),
        "work": dict(Counter(p.source.work for p in passages)),
    }
