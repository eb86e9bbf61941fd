"""Batched merges: every residual weight of a stack built by one batched kernel per step.

A ResidualTransformer layer trains on its merged weight ``W_l = S_g(l) + B_l A_l + diag(d_l)``
(:mod:`layershare.residual`). Built layer by layer, that is per converted matrix and step one
``addmm``, a diagonal update and their backward kernels: small launches that cost more than
their FLOPs (``benchmarks/results/profile-cuda-full.md`` counts them against dense's per
compiled GPT-2 step). A *weight bank* builds, for one matrix type
of one stack (every layer's ``c_attn``, say), all L merged weights at once:

    B = stack(B_l)  (L x m x r),  A = stack(A_l)  (L x r x n),  D = stack(d_l)  (L x k)
    W = S + B @ A   (one ``baddbmm``: with one group S is broadcast over the batch, with G
                     groups the input is the layers' S stacked, one copy -- layers are
                     ordered by group in the bank)
    diag(W_l) += d_l  for all l at once (one in-place add on the batched diagonal: the
                     diagonal costs L k element updates, folded into the same tensor)
    W_1 .. W_L = W.unbind(0)   (views; their backward is one ``stack``)

Backward is batched the same way (a custom autograd function, :class:`_BatchedMerge`): two
``bmm`` for B and A, one reduction over each group's K layers for S (the sum of its users'
gradients), one diagonal copy for d; each layer's gradient is a view of those (the function
is not twice differentiable, unlike the per-layer merge).
The maths is the per-layer merge's, reordered: outputs and gradients equal the per-layer
path to fp32 round-off (tests/test_bank.py). Layers with different shapes, ranks or diagonal
settings fall into separate banks (per-layer ``ranks``).

When it runs -- automatic in training, never in eval:

* :func:`attach` (called by ``convert``/``load``) hangs a :class:`Banks` object on the
  model (a plain attribute: no parameter, buffer or submodule is added, so ``state_dict``,
  ``save``, ``load``, ``merge`` and ``count`` see exactly what they saw before) and two hooks
  on the model's root: before each forward it builds the banks' weights and hands each
  ResidualLinear its own (``module._banked``); after the forward (``always_call``: also on an
  exception) it takes them back. The forward of the per-layer module, still an in-place
  ``nn.Linear`` replacement, is then one ``F.linear`` on its banked weight.
* The banks are built only when the model is in training mode, grad mode is on and some
  bank parameter requires grad -- exactly when the per-layer module would merge anyway
  (:meth:`ResidualLinear.uses_merged`). In eval, or under ``no_grad``, the hook hands out
  nothing and the per-layer paths run unchanged (factored for few tokens, no dense copy kept).
* Each forward builds fresh weights (no cache across forwards), so gradient accumulation
  over micro-batches, re-entrant calls and optimizer steps need no invalidation logic. Under
  ``torch.compile`` of the model the root hooks run too (tested: the per-layer merge is never
  called and the gradients are the eager ones); whether the graph stays whole on a GPU is
  for ``benchmarks/gpu_batched.sh`` to show.
* A layer called on its own (not through the root) or a recomputed forward under gradient
  checkpointing finds no banked weight and merges itself: slower, never wrong.
* Off with :func:`set_batched` ``(model, False)``; ``train.fsdp.shard`` turns it off (FSDP2),
  whose units gather their parameters only inside their own forward (the root's hook would
  see sharded tensors).

Memory: the L merged weights of a bank exist between forward and backward -- as before,
where each layer's merged weight was saved for its backward. The ``unbind`` gradient (and,
with several groups, the stacked S input) add one L x m x n buffer per matrix type during
the step.

What it saves (operators per training step against dense and against per-layer merges) is
measured in benchmarks/results/batched-cpu.md; the GPU protocol is
``benchmarks/gpu_batched.sh``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .residual import ResidualLinear

ATTR = "layershare_banks"


class Bank:
    """The ResidualLinear modules of one matrix type of one stack with equal shapes, ranks and
    diagonal setting, ordered by group (their shared tensor), merged together."""

    def __init__(self, modules: list[ResidualLinear]):
        order: dict[int, int] = {}
        for m in modules:
            order.setdefault(id(m.shared), len(order))
        self.modules = sorted(modules, key=lambda m: order[id(m.shared)])  # stable: layer order
        sizes: dict[int, int] = {}
        for m in self.modules:
            sizes[id(m.shared)] = sizes.get(id(m.shared), 0) + 1
        self.group_sizes = list(sizes.values())

    def needs_grad(self) -> bool:
        return any(p.requires_grad for m in self.modules for p in m._weight_params())

    def weights(self) -> tuple[Tensor, ...]:
        """The merged weights of ``self.modules``, in order (views of one L x m x n tensor)."""
        mods = self.modules
        shared = []
        for m in mods:
            if not shared or shared[-1] is not m.shared:
                shared.append(m.shared)
        diag = mods[0].diag is not None
        tensors = [m.lora_B for m in mods] + [m.lora_A for m in mods]  # B_l (m x r), A_l (r x n)
        tensors += ([m.diag for m in mods] if diag else []) + shared
        w = _BatchedMerge.apply((len(mods), tuple(self.group_sizes), diag), *tensors)
        return w.unbind(0)


class _BatchedMerge(torch.autograd.Function):
    """``W_l = S_g(l) + B_l A_l + diag(d_l)`` for all l at once, forward and backward.

    A function of its own rather than autograd over stack/bmm/add_ because autograd would
    add, per bank and step, the backward of the in-place diagonal update (a clone of the
    L x m x n gradient and two copies) and of each ``stack`` (one select per layer); here the
    backward is two ``bmm`` (A, B), one reduction (S) and a diagonal read (d), and every
    layer's gradient is a view of those batched tensors. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, layout, *tensors):
        n, sizes, diag = layout
        a, b = torch.stack(tensors[:n]), torch.stack(tensors[n:2 * n])  # B_l, A_l
        d = torch.stack(tensors[2 * n:3 * n]) if diag else None
        shared = tensors[(3 if diag else 2) * n:]
        if len(shared) == 1:
            w = torch.baddbmm(shared[0], a, b)  # S broadcast over the L layers
        else:  # each layer's S in place (one copy), then one baddbmm: the same memory
            # traffic as bmm + a broadcast add of the G tensors, one launch fewer
            rows = [s for s, k in zip(shared, sizes) for _ in range(k)]
            w = torch.baddbmm(torch.stack(rows), a, b)
        if d is not None:
            w.diagonal(dim1=-2, dim2=-1).add_(d)
        ctx.layout = layout
        ctx.save_for_backward(a, b)
        return w

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        n, sizes, diag = ctx.layout
        a, b = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        out: list[Tensor | None] = [None] * len(need)
        if any(need[:n]):
            out[:n] = torch.bmm(grad, b.transpose(1, 2)).unbind(0)
        if any(need[n:2 * n]):
            out[n:2 * n] = torch.bmm(a.transpose(1, 2), grad).unbind(0)
        first = 2 * n
        if diag:
            if any(need[first:first + n]):
                # contiguous once: AccumulateGrad would copy each strided view
                out[first:first + n] = torch.diagonal_copy(grad, dim1=-2, dim2=-1).unbind(0)
            first += n
        if any(need[first:]):
            if len(sizes) == 1:
                out[first:] = [grad.sum(0)]
            elif len(set(sizes)) == 1:
                out[first:] = grad.view(len(sizes), sizes[0], *grad.shape[1:]).sum(1).unbind(0)
            else:
                out[first:] = [block.sum(0) for block in grad.split(list(sizes))]
        return (None, *out)


class Banks:
    """All banks of a converted model, and whether batching is on."""

    def __init__(self, banks: list[Bank], enabled: bool = True):
        self.banks, self.enabled = banks, enabled

    def modules(self):
        for bank in self.banks:
            yield from bank.modules


def build_banks(model: nn.Module) -> list[Bank]:
    """One bank per (stack, matrix name, shape, rank, diagonal) over the converted stacks."""
    banks = []
    for stack in getattr(model, "layershare_stacks_converted", ()) or ():
        keyed: dict[tuple, list[ResidualLinear]] = {}
        for layer in stack.layers(model):
            for name, module in layer.named_modules():
                if isinstance(module, ResidualLinear):
                    key = (name, module.out_features, module.in_features, module.rank,
                           module.diag is not None)
                    keyed.setdefault(key, []).append(module)
        banks += [Bank(mods) for mods in keyed.values() if len(mods) > 1]
    return banks


def attach(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Give ``model`` batched merges (see the module docstring); idempotent. Returns it."""
    detach(model)
    banks = build_banks(model)
    if not banks:
        return model
    model.__dict__[ATTR] = Banks(banks, enabled)  # plain attribute: no state-dict change
    # module-level functions (no closures): deepcopy and pickle of the model keep working
    model.register_forward_pre_hook(_hand_out)
    model.register_forward_hook(_take_back, always_call=True)
    return model


def detach(model: nn.Module) -> nn.Module:
    """Remove the banks and their hooks (``merge`` does before densifying)."""
    banks = model.__dict__.pop(ATTR, None)
    for hooks in (model._forward_pre_hooks, model._forward_hooks):
        for key in [k for k, h in hooks.items() if h in (_hand_out, _take_back)]:
            del hooks[key]
            model._forward_hooks_always_called.pop(key, None)
    if banks is not None:
        for module in banks.modules():
            module._banked = None
    return model


def set_batched(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn batched merges on or off for ``model`` (attached by ``convert``). Returns it."""
    banks = model.__dict__.get(ATTR)
    if banks is None and enabled:
        return attach(model)
    if banks is not None:
        banks.enabled = bool(enabled)
    return model


def is_batched(model: nn.Module) -> bool:
    banks = model.__dict__.get(ATTR)
    return banks is not None and banks.enabled


def _hand_out(model: nn.Module, _args) -> None:
    banks: Banks | None = model.__dict__.get(ATTR)
    if banks is None:
        return
    active = banks.enabled and model.training and torch.is_grad_enabled()
    for bank in banks.banks:
        if active and bank.needs_grad():
            weights = _merged(bank)
            for module, weight in zip(bank.modules, weights):
                module._banked = weight
        else:
            for module in bank.modules:
                module._banked = None


def _merged(bank: Bank) -> tuple[Tensor, ...]:
    """The bank's weights in the parameters' dtype even under autocast, as the per-layer
    merge (``ResidualLinear.merged_weight``): the matmul that reads them is autocast's."""
    device = bank.modules[0].shared.device.type
    if device != "meta" and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return bank.weights()
    return bank.weights()


def _take_back(model: nn.Module, _args, _output) -> None:
    banks: Banks | None = model.__dict__.get(ATTR)
    if banks is not None:
        for module in banks.modules():
            module._banked = None


__all__ = ["Bank", "Banks", "attach", "detach", "set_batched", "is_batched", "build_banks"]
