"""``--allocate spectrum``: per-matrix ranks from the whitened spectra (compress/budget.py).

A dense pass over the calibration data, block by block as in compress/sequential.py, collects
each block's Gram matrices, turns every fit unit into its whitened spectrum and frees the
Grams again; nothing is converted. Fit units: for ``residual`` each layer's
``W_l - S_g`` (cost ``m + n`` per rank), for ``lowrank`` each group's matrices side by side
(cost ``m + K n`` per rank: one basis column and a coefficient row per member). The fixed
parameters (residual's shared matrices, the diagonals) are taken off the budget first.
"""

from __future__ import annotations

from ..errors import LayershareError
from ..slots import Slot
from ..svd import pick_shared, stepwise_layer
from .budget import spectrum_ranks
from .calibrate import GramCollector
from .sequential import Activations, blocks, capture_inputs
from .whiten import whitened_spectrum


def spectrum_allocation(model, config, stacks, calib, keep: float, run_block) -> dict:
    """``ShareConfig.ranks`` that spend ``keep`` of the stacks' matrix parameters by spectrum."""
    units, where, fixed, dense_total = [], [], 0, 0
    for stack in stacks:
        layers = stack.layers(model)
        plan = stack.plan
        acts = capture_inputs(model, layers, calib)
        for block_layers, block_groups in blocks(plan):
            slots = {(l, name): Slot(layers[l], name)
                     for l in block_layers for name in stack.linears}
            with GramCollector([s.module for s in slots.values()]) as grams:
                hidden = run_block(layers, block_layers, acts)
            for name in stack.linears:
                for group in block_groups:
                    members = plan.members(group)
                    weights = [slots[l, name].weight().detach() for l in members]
                    gs = [grams.gram(slots[l, name].module) for l in members]
                    m, n = weights[0].shape
                    k = min(m, n)
                    dense_total += len(members) * m * n
                    fixed += len(members) * k * bool(config.diag)
                    if config.method == "residual":
                        step = Slot(layers[stepwise_layer(group, plan.num_groups, plan.num_layers)],
                                    name).weight() if config.init == "stepwise" else None
                        shared = pick_shared(weights, config.init, step)
                        fixed += m * n
                        for l, w, g in zip(members, weights, gs):
                            units.append({"spectrum": whitened_spectrum([w - shared], [g]),
                                          "cost": m + n, "cap": k})
                            where.append((stack.path, name, [l]))
                    else:
                        units.append({"spectrum": whitened_spectrum(weights, gs),
                                      "cost": m + len(members) * n, "cap": k})
                        where.append((stack.path, name, members))
            acts = Activations(hidden, acts.args, acts.kwargs)
            del grams
    budget = keep * dense_total - fixed
    if budget <= 0:
        raise LayershareError(f"--keep {keep:g} is too small for {config.method} with these "
                              "groups: the shared matrices and diagonals alone exceed it")
    least = 0 if config.method == "residual" else 1  # lowrank needs rank >= 1 everywhere
    for unit in units:
        unit["floor"] = least
    ranks = spectrum_ranks(units, budget)
    out: dict[str, dict[str, list[int]]] = {}
    for (path, name, members), rank in zip(where, ranks):
        per_layer = out.setdefault(path, {}).setdefault(
            name, [0] * len(next(s for s in stacks if s.path == path).layers(model)))
        for l in members:
            per_layer[l] = rank
    return out

