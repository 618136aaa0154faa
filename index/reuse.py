"""What a rebuild can take over from the index it replaces: vectors and parses keyed by a hash of their input.

A build stores, beside what asking needs, the key of every text it encoded (passages and sentences) and of
every passage it parsed (the passage's text and its context), plus the recipes that made them (the model,
the parser). The next build of the same directory loads that index as the store does (so a corrupt one is
refused) and encodes or parses only the inputs whose key it has not seen: adding or removing a document
redoes the work of that document alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from index.encoder import resolve

log = logging.getLogger(__name__)

REUSE_EXTRA = "reuse"  # <index>/reuse.json: recipes, parses with holders, counts of the work done
PASSAGE_KEYS, SENTENCE_KEYS, PARSE_KEYS = "passage_keys", "sentence_keys", "parse_keys"  # <index>/<name>.npy
KEY_BYTES = 16  # blake2b digest size: collisions are out of reach for any collection


def content_key(*parts: str) -> bytes:
    """A hash of the exact input (each part length-prefixed, so ("ab", "c") and ("a", "bc") differ)."""
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def key_array(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), KEY_BYTES)


def vector_recipe(model: str, section_prefix: bool) -> dict:
    """What a stored vector depends on besides its text: vectors made under another recipe are not reused."""
    name, spec = resolve(model)
    try:
        weights = metadata.version(spec.pip_name)
    except metadata.PackageNotFoundError:
        weights = "unknown"
    # Not whether bfloat16 was used: its vectors keep cosine >= 0.99997 to float32's (index/encoder.py), and
    # asking would import torch to find out.
    prefixes = [spec.query_prefix, spec.passage_prefix]
    return {"model": name, "weights": weights, "prefixes": prefixes, "section_prefix": section_prefix}


@dataclass
class Reusable:
    """The previous index's vectors and parses by key (empty when there is nothing to reuse)."""

    exact: dict[bytes, np.ndarray] = field(default_factory=dict)  # float32 passage vectors
    half: dict[bytes, np.ndarray] = field(default_factory=dict)  # sentence vectors, stored as float16
    parses: dict[bytes, list[dict]] = field(default_factory=dict)

    def vectors(self, keys: list[bytes], texts: list[str], encode: Callable, *, exact: bool) -> tuple[np.ndarray, int]:
        """One vector per key: reused when known, else encoded (encode(texts) -> float32 rows). `exact`: only
        float32 vectors qualify (passages are stored in full precision); else a previous sentence vector comes
        first (the same as a fresh build's, bit for bit). Returns the vectors and how many texts were encoded."""
        known = [self.exact.get(k) if exact else self.half.get(k, self.exact.get(k)) for k in keys]
        missing = [i for i, v in enumerate(known) if v is None]
        fresh = encode([texts[i] for i in missing]) if missing else None
        for row, i in enumerate(missing):
            known[i] = fresh[row]
        if not known:
            return np.zeros((0, 0), np.float32), 0
        return np.vstack(known).astype(np.float32, copy=False), len(missing)

    def missing_parses(self, keys: list[bytes]) -> list[int]:
        return [i for i, k in enumerate(keys) if k not in self.parses]


def load_previous(index_dir: Path | str, recipe: dict, parser: str) -> Reusable:
    """The reusable work of the index at `index_dir` (a location: index/stores.py), validated like any load;
    nothing if it is missing, unreadable, or made with another model (one log line says why)."""
    from index import stores
    from index.store import IndexLoadError, StoreUnavailable

    if not stores.exists(index_dir):
        return Reusable()
    try:
        previous = stores.open_index(index_dir)
    except (IndexLoadError, StoreUnavailable) as exc:
        log.warning("building from scratch: the previous index is unusable: %s", str(exc).split(" (index at")[0])
        return Reusable()
    why_not = _why_not_reusable(previous, recipe)
    if why_not:
        log.warning("building from scratch: the previous index %s", why_not)
        return Reusable()
    return _reusable(previous, parser)


def _why_not_reusable(previous, recipe: dict) -> str | None:
    info = previous.extra(REUSE_EXTRA)
    if not isinstance(info, dict) or any(previous.array(k) is None for k in (PASSAGE_KEYS, SENTENCE_KEYS)):
        return "has no content keys (built by an older version)"
    if info.get("vectors") != recipe:
        return f"was built with another model or recipe ({info.get('vectors')}, now {recipe})"
    sentences = previous.array("sentence_vectors")
    n = len(previous)
    shapes_ok = previous.array(PASSAGE_KEYS).shape == (n, KEY_BYTES) and sentences is not None
    if not shapes_ok or previous.array(SENTENCE_KEYS).shape != (len(sentences), KEY_BYTES):
        return "has content keys that do not match its vectors"
    return None


def _reusable(previous, parser: str) -> Reusable:
    n = len(previous)
    vectors = previous.passage_vectors(np.arange(n))
    reusable = Reusable(exact=dict(zip(map(bytes, previous.array(PASSAGE_KEYS)), vectors, strict=True)))
    sentences = previous.array("sentence_vectors")
    reusable.half = dict(zip(map(bytes, previous.array(SENTENCE_KEYS)), sentences, strict=True))
    info = previous.extra(REUSE_EXTRA)
    parse_keys = previous.array(PARSE_KEYS)
    if info.get("parser") == parser and parse_keys is not None and len(parse_keys) == n:
        found = info.get("parses", {})
        reusable.parses = {bytes(k): found.get(str(i), []) for i, k in enumerate(parse_keys)}
    else:
        log.info("parsing every passage again: the attribution parser changed since the previous index")
    log.info("reusing the work of the previous index at %s (%d passages)", previous.path, n)
    return reusable


def reuse_record(recipe: dict, parser: str, parses: list[list[dict]], counts: dict[str, int]) -> dict:
    """The index's REUSE_EXTRA: parses are kept for the passages that have holders only (the rest are [])."""
    kept = {str(i): items for i, items in enumerate(parses) if items}
    return {"vectors": recipe, "parser": parser, "parses": kept, "work": counts}
