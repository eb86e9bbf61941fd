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

import torch
from torch import Tensor, nn

CHUNK = 4096  # rows per float64 product


class GramCollector:
    """``with GramCollector(modules) as grams: model(...)`` then ``grams.gram(module)``.

    ``modules``: the ``nn.Linear`` / GPT-2 ``Conv1D`` modules whose inputs to collect;
    ``grams.tokens(module)`` counts the input rows (tokens) seen.
    """

    def __init__(self, modules: list[nn.Module]):
        self.modules = list(modules)
        self._gram: dict[int, Tensor] = {}
        self._rows: dict[int, int] = {}
        self._alias: dict[int, int] = {}
        self._last: tuple[Tensor, int] | None = None
        self._handles = []

    def __enter__(self) -> "GramCollector":
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last = None  # no activation kept alive after the block

    def _hook(self, module: nn.Module, args) -> None:
        x = args[0]
        key = id(module)
        if self._last is not None and self._last[0] is x and self._last[1] != key:
            self._alias.setdefault(key, self._alias.get(self._last[1], self._last[1]))
            return
        self._last = (x, key)
        if key in self._alias:  # linked on an earlier call, input now differs: unlink
            raise RuntimeError("a module's input changed identity between calibration batches")
        rows = x.detach().reshape(-1, x.shape[-1])
        gram = self._gram.get(key)
        if gram is None:
            gram = self._gram[key] = torch.zeros(rows.shape[1], rows.shape[1], dtype=torch.float64,
                                                 device=rows.device)
        for start in range(0, rows.shape[0], CHUNK):
            chunk = rows[start:start + CHUNK].float()
            gram += (chunk.T @ chunk).double()
        self._rows[key] = self._rows.get(key, 0) + rows.shape[0]

    def gram(self, module: nn.Module) -> Tensor:
        key = id(module)
        key = self._alias.get(key, key)
        if key not in self._gram:
            raise KeyError(f"no calibration input reached {type(module).__name__}")
        return self._gram[key]

    def tokens(self, module: nn.Module) -> int:
        key = id(module)
        return self._rows.get(self._alias.get(key, key), 0)
