"""Deterministic train/valid/test splits that never depend on Python's hash seed.

Every decision comes from sha256 of ``SEED + key``, so the same inputs split the same way on
every machine and Python version, and an item keeps its split when unrelated items are
added or removed (which matters for Debian packages whose contents move between releases).
Splits are made over *units* that must not be cut (a Brown document, a help file, a synset),
so nothing leaks from one split to another.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Sequence

from ..errors import LayershareError

SEED = "layershare-data-v1"
SPLITS = ("train", "valid", "test")


def stable_unit(key: str, seed: str = SEED) -> float:
    """A number in [0, 1) fixed by ``key``: the same on every run and machine."""
    digest = hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def bucket(key: str, valid: float, test: float, seed: str = SEED) -> str:
    """The split of one unit by hashing alone: ``test`` below ``test``, then ``valid``."""
    u = stable_unit(key, seed)
    return "test" if u < test else "valid" if u < test + valid else "train"


def _take(n: int, fraction: float) -> int:
    # At least one unit per held-out split once a group has three units, so every group
    # (genre, supersense) is present in every split.
    return max(1, round(n * fraction)) if n >= 3 else 0


def stratified_split(keys: Sequence[str], groups: Sequence[str], valid: float = 0.1,
                     test: float = 0.1, seed: str = SEED) -> dict[str, list[int]]:
    """Indices of ``keys`` per split, each group split ~``1-valid-test / valid / test``.

    Within a group, units are ordered by their stable hash and the first ones go to test,
    the next to valid; indices come back sorted so splits keep the source order.
    """
    if len(keys) != len(groups):
        raise LayershareError(f"stratified_split: {len(keys)} keys but {len(groups)} groups")
    if len(set(keys)) != len(keys):
        raise LayershareError("stratified_split: keys must be unique")
    if not (0 <= valid and 0 <= test and valid + test < 1):
        raise LayershareError(f"split fractions valid={valid}, test={test} must be >= 0 "
                              "and leave something for train")
    members: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        members[group].append(i)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for group in sorted(members):
        idx = sorted(members[group], key=lambda i: (stable_unit(keys[i], seed), keys[i]))
        n_test, n_valid = _take(len(idx), test), _take(len(idx), valid)
        out["test"] += idx[:n_test]
        out["valid"] += idx[n_test:n_test + n_valid]
        out["train"] += idx[n_test + n_valid:]
    return {s: sorted(v) for s, v in out.items()}
