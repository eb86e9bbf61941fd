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


class CrossGramCollector:
    """``C = X^T X~`` for each module: ``X`` its input in the original model, ``X~`` its input in
    the compressed one, for the same tokens (compress/whiten.py ``original_target``).

    Per calibration batch: ``with cross.recording(): block(original batch)`` keeps each
    module's input, then ``with cross.pairing(): block(compressed batch)`` adds
    ``X_b^T X~_b`` (float32 chunk products summed in float64, as ``GramCollector``) and drops
    the kept inputs. Modules that read one tensor (q, k, v; gate, up) share one C.
    """

    def __init__(self, modules: list[nn.Module]):
        self.modules = list(modules)
        self._kept: dict[int, Tensor] = {}
        self._cross: dict[int, Tensor] = {}
        self._alias: dict[int, int] = {}
        self._last: tuple[Tensor, int] | None = None
        self._handles = []

    def _hooked(self, hook):
        collector = self

        class _Hooks:
            def __enter__(self):
                for module in collector.modules:
                    collector._handles.append(module.register_forward_pre_hook(hook))

            def __exit__(self, *exc):
                for handle in collector._handles:
                    handle.remove()
                collector._handles.clear()
                collector._last = None
        return _Hooks()

    def recording(self):
        return self._hooked(self._record)

    def pairing(self):
        return self._hooked(self._pair)

    def _shared(self, x: Tensor, key: int) -> bool:
        """True when x is the tensor the previous module saw (an alias of that module)."""
        if self._last is not None and self._last[0] is x and self._last[1] != key:
            self._alias.setdefault(key, self._alias.get(self._last[1], self._last[1]))
            return True
        self._last = (x, key)
        return False

    def _record(self, module: nn.Module, args) -> None:
        if not self._shared(args[0], id(module)):
            self._kept[id(module)] = args[0].detach().reshape(-1, args[0].shape[-1])

    def _pair(self, module: nn.Module, args) -> None:
        key = id(module)
        if self._shared(args[0], key):
            return
        kept = self._kept.pop(key, None)
        if kept is None:
            raise RuntimeError("pairing() saw a module that recording() did not")
        rows = args[0].detach().reshape(-1, args[0].shape[-1])
        if rows.shape != kept.shape:
            raise RuntimeError("original and compressed inputs differ in shape")
        cross = self._cross.get(key)
        if cross is None:
            cross = self._cross[key] = torch.zeros(rows.shape[1], rows.shape[1],
                                                   dtype=torch.float64, device=rows.device)
        for start in range(0, rows.shape[0], CHUNK):
            cross += (kept[start:start + CHUNK].float().T @ rows[start:start + CHUNK].float()).double()

    def cross(self, module: nn.Module) -> Tensor:
        key = id(module)
        key = self._alias.get(key, key)
        if key not in self._cross:
            raise KeyError(f"no paired calibration input reached {type(module).__name__}")
        return self._cross[key]
