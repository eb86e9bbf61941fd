"""Sharing plans: which layers of a stack share one set of weights.

A plan maps layer ``l`` of an ``L``-layer stack to a group ``g(l)``; the layers of a group
share their weights (fully for ``tied``, the full-rank part ``S_g`` for ``residual``, the
basis ``U_g`` for ``lowrank``). With ``K`` = group size there are ``G = ceil(L / K)`` groups.

Strategies (Takase & Kiyono 2021, "Lessons on Parameter Sharing across Layers"), shown for
L = 6, K = 2:

* ``sequence``  0,0,1,1,2,2  -- K adjacent layers share (ResidualTransformer's choice)
* ``cycle``     0,1,2,0,1,2
* ``cycle-rev`` 0,1,2,2,1,0  -- cycle, with the last G layers in reverse order
* ``sandwich``  0,1,1,2,2,3  -- first and last layer unique, the middle in runs of K
  (Subformer; with K >= L - 2 the whole middle shares one set)
* an explicit list of group ids, e.g. ``[0, 0, 1, 1, 0, 0]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import LayershareError

STRATEGIES = ("sequence", "cycle", "cycle-rev", "sandwich")


@dataclass(frozen=True)
class SharingPlan:
    """``groups[l]`` is the group of layer ``l``; ids are 0..G-1 in order of first use."""

    groups: tuple[int, ...]

    @property
    def num_layers(self) -> int:
        return len(self.groups)

    @property
    def num_groups(self) -> int:
        return len(set(self.groups))

    def members(self, group: int) -> list[int]:
        """The layers of ``group``, in stack order."""
        return [l for l, g in enumerate(self.groups) if g == group]

    def source(self, layer: int) -> int:
        """The first layer of ``layer``'s group: the one whose tensors a tied layer uses."""
        return self.groups.index(self.groups[layer])

    @classmethod
    def build(cls, num_layers: int, group_size: int = 2,
              strategy: str | list[int] | tuple[int, ...] = "sequence") -> "SharingPlan":
        """Make a plan; raises :class:`LayershareError` for any impossible request."""
        L = num_layers
        if L < 1:
            raise LayershareError(f"a layer stack needs at least one layer, got {L}")
        if not isinstance(strategy, str):
            return cls.explicit(strategy, L)
        if strategy not in STRATEGIES:
            raise LayershareError(
                f"unknown sharing strategy {strategy!r}; choose one of {', '.join(STRATEGIES)} "
                "or give an explicit list of group ids")
        K = group_size
        if not isinstance(K, int) or K < 1:
            raise LayershareError(f"group size must be an integer >= 1, got {K!r}")
        if K > L:
            raise LayershareError(f"group size {K} is larger than the stack ({L} layers)")
        G = math.ceil(L / K)
        if strategy == "sequence":
            groups = [l // K for l in range(L)]
        elif strategy == "cycle":
            groups = [l % G for l in range(L)]
        elif strategy == "cycle-rev":
            groups = [l % G if l < L - G else L - 1 - l for l in range(L)]
        else:  # sandwich
            if L < 3:
                raise LayershareError(f"the sandwich strategy needs at least 3 layers, got {L}")
            middle = [1 + i // K for i in range(L - 2)]
            groups = [0, *middle, middle[-1] + 1]
        return cls(tuple(groups))

    @classmethod
    def explicit(cls, groups, num_layers: int) -> "SharingPlan":
        """A plan from a list of group ids; ids are renumbered in order of first use."""
        groups = list(groups)
        if len(groups) != num_layers:
            raise LayershareError(
                f"an explicit plan needs one group id per layer: got {len(groups)} ids "
                f"for {num_layers} layers")
        if not all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in groups):
            raise LayershareError(f"group ids must be integers >= 0, got {groups}")
        renumber: dict[int, int] = {}
        return cls(tuple(renumber.setdefault(g, len(renumber)) for g in groups))
