"""Gram matrices of the inputs of linear layers, collected by forward hooks.

For a linear layer ``y = x W^T + b`` called on tokens ``X`` (tokens x n), calibration-aware
fitting needs only ``G = X^T X`` (n x n): the data metric is ``||E X^T||_F^2 = tr(E G E^T)``
(compress/whiten.py). ``GramCollector`` accumulates G in float64 over every call while it is
active: each chunk of at most CHUNK rows is multiplied in the input's own precision (float32:
a sum of 4096 products, relative error ~1e-6, at a quarter of float64's cost on CPU) and added
to the float64 total, so the rounding does not grow with the number of tokens.

Matrices that read the very same input tensor (q, k, v of an attention; gate and up of a
gated MLP) get one shared G: the hook sees the tensor object the previous hook saw and links
the two instead of accumulating the same product again.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

CHUNK = 4096  # rows per float64 product


class _InputHooks:
    """Forward pre-hooks on ``modules``, and the aliasing of modules that read one tensor."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = list(modules)
        self._alias: dict[int, int] = {}
        self._last: tuple[Tensor, int] | None = None
        self._handles = []

    @contextmanager
    def _hooked(self, hook):
        self._handles = [module.register_forward_pre_hook(hook) for module in self.modules]
        try:
            yield self
        finally:
            for handle in self._handles:
                handle.remove()
            self._handles = []
            self._last = None  # no activation kept alive after the block

    def _linked(self, x: Tensor, key: int) -> bool:
        """True when x is the very tensor the previous module saw: key becomes its alias."""
        if self._last is not None and self._last[0] is x and self._last[1] != key:
            self._alias.setdefault(key, self._alias.get(self._last[1], self._last[1]))
            return True
        self._last = (x, key)
        return False

    def _key(self, module: nn.Module) -> int:
        return self._alias.get(id(module), id(module))


def _accumulate(total: Tensor | None, left: Tensor, right: Tensor) -> Tensor:
    """``total + left^T right`` in float64, from float32 products of CHUNK rows at a time."""
    if total is None:
        total = torch.zeros(left.shape[1], right.shape[1], dtype=torch.float64, device=left.device)
    for start in range(0, left.shape[0], CHUNK):
        total += (left[start:start + CHUNK].float().T @ right[start:start + CHUNK].float()).double()
    return total


class GramCollector(_InputHooks):
    """``with GramCollector(modules) as grams: model(...)`` then ``grams.gram(module)``.

    ``modules``: the ``nn.Linear`` / GPT-2 ``Conv1D`` modules whose inputs to collect;
    ``grams.tokens(module)`` counts the input rows (tokens) seen.
    """

    def __init__(self, modules: list[nn.Module]):
        super().__init__(modules)
        self._gram: dict[int, Tensor] = {}
        self._rows: dict[int, int] = {}
        self._context = None

    def __enter__(self) -> "GramCollector":
        self._context = self._hooked(self._hook)
        return self._context.__enter__()

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)

    def _hook(self, module: nn.Module, args) -> None:
        key = id(module)
        if self._linked(args[0], key):
            return
        if key in self._alias:  # linked on an earlier call, input now differs: unlink
            raise RuntimeError("a module's input changed identity between calibration batches")
        rows = args[0].detach().reshape(-1, args[0].shape[-1])
        self._gram[key] = _accumulate(self._gram.get(key), rows, rows)
        self._rows[key] = self._rows.get(key, 0) + rows.shape[0]

    def gram(self, module: nn.Module) -> Tensor:
        if self._key(module) not in self._gram:
            raise KeyError(f"no calibration input reached {type(module).__name__}")
        return self._gram[self._key(module)]

    def tokens(self, module: nn.Module) -> int:
        return self._rows.get(self._key(module), 0)


class CrossGramCollector(_InputHooks):
    """``C = X^T X~`` for each module: ``X`` its input in the original model, ``X~`` its input in
    the compressed one, for the same tokens (compress/whiten.py ``original_target``).

    Per calibration batch: ``with cross.recording(): block(original batch)`` keeps each
    module's input, then ``with cross.pairing(): block(compressed batch)`` adds
    ``X_b^T X~_b`` (as ``GramCollector`` sums) and drops the kept inputs. Modules that read one
    tensor (q, k, v; gate, up) share one C.
    """

    def __init__(self, modules: list[nn.Module]):
        super().__init__(modules)
        self._kept: dict[int, Tensor] = {}
        self._cross: dict[int, Tensor] = {}

    def recording(self):
        return self._hooked(self._record)

    def pairing(self):
        return self._hooked(self._pair)

    def _record(self, module: nn.Module, args) -> None:
        if not self._linked(args[0], id(module)):
            self._kept[id(module)] = args[0].detach().reshape(-1, args[0].shape[-1])

    def _pair(self, module: nn.Module, args) -> None:
        key = id(module)
        if self._linked(args[0], key):
            return
        kept = self._kept.pop(key, None)
        rows = args[0].detach().reshape(-1, args[0].shape[-1])
        if kept is None or kept.shape != rows.shape:
            raise RuntimeError("pairing() needs the same modules and shapes as recording()")
        self._cross[key] = _accumulate(self._cross.get(key), kept, rows)

    def cross(self, module: nn.Module) -> Tensor:
        if self._key(module) not in self._cross:
            raise KeyError(f"no paired calibration input reached {type(module).__name__}")
        return self._cross[self._key(module)]
