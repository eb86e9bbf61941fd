"""Budgets a user can state: ``keep = F`` of the layer stack's matrix parameters.

What is counted: the converted weight matrices of the stack(s), each dense ``m x n`` matrix
as ``m n`` parameters (biases, norms and embeddings are outside the budget, as in SVD-LLM's
and Basis Sharing's ratios). For one matrix name of an L-layer stack with G sharing groups
and ``k = min(m, n)``, the unique parameters at rank r are

    residual   G m n + L r (m + n) + L k [diag]       (S_g once per group)
    lowrank    r (G m + L n) + L k [diag]             (basis once per group)
    tied       G m n                                  (no rank: K sets the size)

**uniform**: every matrix name keeps at most F of its own ``L m n``: the largest r that fits,

    residual   r = floor((F L m n - G m n - L k [diag]) / (L (m + n)))
    lowrank    r = floor((F L m n - L k [diag]) / (G m + L n))

capped at k; for ``tied`` the group size is the smallest K with ``G / L <= F``. A budget too
small for a method (residual with ``F <= G / L``: the shared matrices alone exceed it) is an
error that says which K would fit.

**spectrum**: one budget over all matrices of the stack, spent rank by rank where the
whitened error falls the most per parameter: each fit unit u (one matrix for residual and
K = 1, a group's shared basis otherwise) offers its whitened squared singular values
``sigma_i^2`` (compress/whiten.py) normalised by the unit's whitened energy ``||W S||^2``,
at cost ``c_u`` parameters per rank; ranks go to the largest ``sigma_i^2 / ||W S||^2 / c_u``
until the budget is spent (the normalisation makes the errors of different layers comparable;
unnormalised, the first layers starve, see ../shared/notes/anchors.md).
"""

from __future__ import annotations

import math

from torch import nn

from ..errors import LayershareError
from ..lowrank import LowRankLinear
from ..residual import ResidualLinear


def uniform_rank(method: str, keep: float, m: int, n: int, layers: int, groups: int,
                 diag: bool) -> int:
    """The largest rank with which one matrix name keeps at most ``keep`` (module docstring)."""
    k = min(m, n)
    budget = keep * layers * m * n - layers * k * diag
    if method == "residual":
        rank = math.floor((budget - groups * m * n) / (layers * (m + n)))
        if rank < 0:
            fits = math.ceil(1 / max(keep - k * diag / (m * n), 1e-9))
            raise LayershareError(
                f"--keep {keep:g} is too small for residual with {groups} groups of {layers} "
                f"layers: the shared matrices alone keep {groups / layers:.2f}; use a group "
                f"size of at least {fits + 1}")
    else:
        rank = math.floor(budget / (groups * m + layers * n))
        if rank < 1:
            raise LayershareError(f"--keep {keep:g} leaves no rank for lowrank on a {m}x{n} matrix")
    return min(rank, k)


def tied_group_size(keep: float, layers: int) -> int:
    """The smallest group size K whose ``ceil(L / K) / L`` is at most ``keep``."""
    for size in range(1, layers + 1):
        if math.ceil(layers / size) / layers <= keep + 1e-12:
            return size
    raise LayershareError(f"--keep {keep:g} is below 1/{layers}: tied cannot go that small")


def check_keep(keep: float) -> float:
    if not isinstance(keep, (int, float)) or isinstance(keep, bool) or not 0 < keep < 1:
        raise LayershareError("--keep must be a fraction between 0 and 1 (exclusive), "
                              f"got {keep!r}")
    return float(keep)


def matrix_params(model: nn.Module) -> tuple[int, int]:
    """(unique, dense) parameters of the converted matrices of ``model``'s stacks (no biases)."""
    unique, dense, seen = 0, 0, set()
    for stack in model.layershare_stacks_converted:
        for layer in stack.layers(model):
            for name in stack.linears:
                module = layer.get_submodule(name)
                if isinstance(module, (ResidualLinear, LowRankLinear)):
                    m, n = module.out_features, module.in_features
                    tensors = [p for p in module.parameters(recurse=False) if p is not module.bias]
                else:  # tied: the module keeps its (shared) dense weight
                    m, n = module.weight.shape
                    tensors = [module.weight]
                dense += m * n
                for p in tensors:
                    if id(p) not in seen:
                        seen.add(id(p))
                        unique += p.numel()
    return unique, dense


def spectrum_ranks(units: list[dict], budget: float) -> list[int]:
    """Ranks per fit unit from one global budget (module docstring).

    ``units``: dicts with ``spectrum`` (descending squared whitened singular values, a list or
    1-d tensor), ``cost`` (parameters per rank), ``cap`` (largest rank) and optionally
    ``floor`` (ranks every unit gets first, charged to the budget). Returns the rank of each
    unit; the total ``sum(rank * cost)`` stays within ``budget`` (or is the floors' cost).
    """
    offers = []
    ranks = [unit.get("floor", 0) for unit in units]
    spent = float(sum(r * unit["cost"] for r, unit in zip(ranks, units)))
    for u, unit in enumerate(units):
        spectrum = [float(s) for s in unit["spectrum"]][: unit["cap"]]
        energy = sum(spectrum) or 1.0
        offers += [(s / energy / unit["cost"], u) for s in spectrum[ranks[u]:]]
    offers.sort(key=lambda o: -o[0])
    for _, u in offers:  # each unit's offers come in its own descending order
        if spent + units[u]["cost"] > budget:
            continue
        ranks[u] += 1
        spent += units[u]["cost"]
    return ranks
