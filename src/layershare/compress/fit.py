"""``layershare.compress`` of a model in memory (:func:`compress_model`; the public call,
which also takes a model by name, is api.py's): a trained model made smaller, its factors
fitted to calibration data.

    import layershare
    result = layershare.compress(model, calib=batches, method="residual", group_size=2, keep=0.6)
    layershare.save(result.model, "small/")

The model is converted exactly as ``layershare.convert`` would (same modules, same
checkpoint format), but each factor is the optimum in the metric of the model's own
activations, ``||(W - W') X^T||`` (compress/whiten.py), instead of ``||W - W'||``:

* ``lowrank`` K = 1: SVD-LLM's whitened truncated SVD; K > 1: Basis Sharing with whitening;
* ``residual``: the shared ``S_g`` as ``convert`` picks it (mean / first / stepwise), the
  per-layer low-rank term as the whitened SVD of ``W_l - S_g``, then the closed-form
  diagonal that best reduces what remains;
* ``tied``: the group mean, from the weights alone (the floor every method must beat).

Calibration runs layer by layer (compress/sequential.py): in sequential mode (default) each
block is fitted on the activations that the already compressed blocks produce. Each matrix
then reproduces its own response to those inputs (``target="local"``, SVD-LLM, default), or
the outputs the *original* model gives at that point (``target="original"``: ``W* = W C
G~^-1``, compress/whiten.py). The second is optimal per matrix on the calibration tokens but
measured worse end to end on SmolLM2 (benchmarks/results/pretrained.md): it fits the
calibration set's noise, so it is an option, not the default. ``calib=None``
is the data-free fit (what ``convert`` does), with the same budget options. ``keep=F``
chooses every rank so that the stack keeps at most F of its matrix parameters
(compress/budget.py).
"""

from __future__ import annotations

import time

import torch
from torch import nn
from tqdm import tqdm

from ..config import ShareConfig
from ..errors import LayershareError
from ..slots import Slot
from ..surgery import DataFreeFit, convert_groups, mark_converted, plan_stacks
from . import budget
from .allocate import spectrum_allocation
from .calibrate import CrossGramCollector, GramCollector
from .options import check_options
from .result import CompressResult
from .sequential import Activations, blocks, capture_inputs, run_layer
from .whiten import best_diagonal, original_target, whitened_basis, whitened_error, whitened_factors


class CalibratedFit(DataFreeFit):
    """The fits of compress/whiten.py with the Gram matrices of one block; records each
    matrix's relative whitened error ``||(W - W') X^T||^2 / ||W X^T||^2`` in ``errors``."""

    def __init__(self, grams: GramCollector, errors: dict[str, list[float]]):
        self.grams, self.errors = grams, errors
        self._entry: dict[int, tuple[int, float]] = {}  # slot module -> (index, ||W X^T||^2)

    def _gram(self, slot: Slot):
        return self.grams.gram(slot.module)

    def _record(self, slot: Slot, error, weight=None) -> None:
        G = self._gram(slot)
        if weight is not None:  # a new matrix; otherwise an improved fit of the last one
            values = self.errors.setdefault(slot.name, [])
            energy = whitened_error(weight, G, torch.float32)  # a report: float32 is enough
            self._entry[id(slot.module)] = (len(values), max(energy, 1e-30))
            values.append(0.0)
        index, energy = self._entry[id(slot.module)]
        self.errors[slot.name][index] = whitened_error(error, G, torch.float32) / energy

    def residual(self, module, weight, slot) -> None:
        G = self._gram(slot)
        delta = weight.double() - module.shared.double()
        if module.rank > 0:
            a, b = whitened_factors(delta, G, module.rank)
            module.lora_B.copy_(a)  # (m x r)
            module.lora_A.copy_(b)  # (r x n)
            delta = delta - a.double() @ b.double()
        if module.diag is not None:
            module.diag.copy_(best_diagonal(delta, G))
        self._record(slot, weight - module.merged_weight(), weight)

    def basis(self, weights, rank, slots):
        basis, coeffs = whitened_basis(weights, [self._gram(s) for s in slots], rank)
        for slot, weight, coeff in zip(slots, weights, coeffs):
            self._record(slot, weight - basis @ coeff, weight)
        return basis, coeffs

    def diagonal(self, residual, slot):
        d = best_diagonal(residual, self._gram(slot))
        k = len(d)
        remaining = residual.clone()
        remaining[:k, :k] -= torch.diag(d)
        self._record(slot, remaining)
        return d


def compress_model(model: nn.Module, calib: list[dict] | None = None, method: str = "residual",
             keep: float | None = None, rank: int | None = None, group_size: int = 2,
             allocate: str = "uniform", sequential: bool = True, target: str = "local",
             progress: bool = True, materialize=None, **share) -> CompressResult:
    """Compress ``model`` in place (see the module docstring).

    ``calib``: calibration batches, each a dict of model inputs (``{"input_ids": ...}``), or
    None for the data-free fit. Exactly one of ``keep`` (fraction of the stack's matrix
    parameters to keep) and ``rank`` (one rank for every matrix). ``share``: further
    ShareConfig fields (``strategy``, ``init``, ``diag``, ``matrices``...). ``materialize``:
    for a model whose layers are not read yet (formats/lazy.py), called as
    ``materialize(stack_path, layer_indices)`` before each block is touched. ``target``:
    ``original`` or ``local`` (module docstring; the same in non-sequential mode).
    """
    start = time.perf_counter()
    was_training = model.training
    config = check_options(method, keep, rank, group_size, allocate, target, **share)
    if allocate == "spectrum" and calib is None:
        raise LayershareError("--allocate spectrum needs --keep, calibration data and a "
                              "residual or lowrank method")
    if calib is not None and not calib:
        raise LayershareError("no calibration batches")
    if keep is not None:
        keep = budget.check_keep(keep)
    if keep is not None and method == "tied":
        size = budget.tied_group_size(keep, min(len(model.get_submodule(s.path))
                                                 for s in plan_stacks(model, config)))
        config = ShareConfig(**{**config.to_dict(), "group_size": size})
    stacks = plan_stacks(model, config)
    if allocate == "spectrum" and materialize is not None:
        raise LayershareError("--allocate spectrum reads every layer twice: not with lazy loading")
    model.eval()  # calibration without dropout; the training mode comes back at the end
    if keep is not None and method != "tied":
        config.ranks = (spectrum_allocation(model, config, stacks, calib, keep, _run_block)
                        if allocate == "spectrum" else _uniform_ranks(model, config, stacks, keep))
    errors: dict[str, list[float]] = {}
    tokens = 0
    bar = tqdm(total=sum(s.plan.num_layers for s in stacks), unit="layer", desc="compress",
               disable=not progress)
    for stack in stacks:
        if calib is None or method == "tied":
            for block_layers, block_groups in blocks(stack.plan):
                if materialize is not None:
                    materialize(stack.path, block_layers)
                convert_groups(model, config, stack, block_groups)
                bar.update(len(block_layers))
            continue
        tokens = _calibrated_stack(model, config, stack, calib, sequential,
                                   sequential and target == "original", errors, bar, materialize)
    bar.close()
    mark_converted(model, config, stacks)
    model.train(was_training)
    unique, dense = budget.matrix_params(model)
    return CompressResult(model, unique / dense, errors, time.perf_counter() - start, tokens)


def _uniform_ranks(model, config, stacks, keep) -> dict:
    ranks = {}
    for stack in stacks:
        layers = stack.layers(model)
        per_name = {}
        for name in stack.linears:
            m, n = Slot(layers[0], name).weight().shape
            r = budget.uniform_rank(config.method, keep, m, n, stack.plan.num_layers,
                                    stack.plan.num_groups, bool(config.diag))
            per_name[name] = [r] * stack.plan.num_layers
        ranks[stack.path] = per_name
    return ranks


def _calibrated_stack(model, config, stack, calib, sequential, to_original, errors, bar,
                      materialize) -> int:
    """Fit one stack block by block on its captured inputs; returns the calibration tokens.

    ``to_original``: also carry the original model's activations (``orig``) and fit each
    matrix to the original outputs (``original_target``)."""
    layers = stack.layers(model)
    acts = capture_inputs(model, layers, calib)
    orig = Activations(list(acts.hidden), acts.args, acts.kwargs) if to_original else None
    for block_layers, block_groups in blocks(stack.plan):
        if materialize is not None:
            materialize(stack.path, block_layers)
        slots = [Slot(layers[l], name) for l in block_layers for name in stack.linears]
        fused = [s.name for s in slots if s.module is None]
        if fused:
            raise LayershareError(f"calibrated compression needs nn.Linear or Conv1D matrices; "
                                  f"{fused[0]!r} is a fused in_proj_weight (use calib none)")
        modules = [s.module for s in slots]
        if orig is not None:
            grams, orig = _paired_statistics(layers, block_layers, slots, orig, acts)
        else:
            with GramCollector(modules) as grams:
                dense_out = _run_block(layers, block_layers, acts)
        convert_groups(model, config, stack, block_groups, CalibratedFit(grams, errors))
        del grams
        acts = Activations(_run_block(layers, block_layers, acts) if sequential else dense_out,
                           acts.args, acts.kwargs)
        bar.update(len(block_layers))
    return sum(h.shape[:-1].numel() for h in acts.hidden)


def _paired_statistics(layers, block_layers, slots, orig: Activations, acts: Activations):
    """Run the dense block on both streams, batch by batch; collect ``G~`` on the compressed
    stream and ``C = X^T X~`` across them, then replace every dense weight by its target
    ``W*`` (in place: the fit reads the dense weights next). Returns the Gram collector and the
    original stream after the block."""
    modules = [s.module for s in slots]
    grams, cross = GramCollector(modules), CrossGramCollector(modules)
    next_orig = []
    for b in range(len(acts.hidden)):
        def one(a):
            return Activations([a.hidden[b]], [a.args[b]], [a.kwargs[b]])
        with cross.recording():
            next_orig += _run_block(layers, block_layers, one(orig))
        with cross.pairing(), grams:
            _run_block(layers, block_layers, one(acts))
    with torch.no_grad():
        for slot in slots:  # Slot.weight() is a view in nn.Linear layout (Conv1D: transposed)
            weight, module = slot.weight(), slot.module
            weight.copy_(original_target(weight, cross.cross(module), grams.gram(module)))
    return grams, Activations(next_orig, orig.args, orig.kwargs)


def _run_block(layers, block_layers, acts: Activations) -> list[torch.Tensor]:
    hidden = acts.hidden
    for l in block_layers:
        hidden = run_layer(layers[l], Activations(hidden, acts.args, acts.kwargs))
    return hidden
