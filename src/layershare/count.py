"""``count``: parameters counted once each, broken down the way the papers report them.

Every tensor counts once however many layers hold it. Categories:

* ``embeddings`` -- ``nn.Embedding`` weights outside the stacks (a tied output head is the
  same tensor and is not counted again);
* ``layers`` -- inside the stack(s), split into ``shared`` (full-rank weights held by a group:
  residual S, a shared low-rank basis, tied tensors), ``lowrank`` (per-layer factors),
  ``diagonal`` and ``other`` (biases, norms, matrices left dense);
* ``head`` -- everything else (output head, final norm, pooler, convolutional front-end).

``dense_layer_params`` is what the stacks would hold unshared: each layer counted on its own,
each converted matrix as ``m n``. ``compression = dense_layer_params / layer_params``.
``layers`` is the number of layer positions in the stacks (encoder + decoder for two stacks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .lowrank import LowRankLinear
from .residual import ResidualLinear


@dataclass
class ParamCount:
    unique_params: int
    embeddings: int
    layer_params: int
    shared: int
    lowrank: int
    diagonal: int
    other: int
    head: int
    dense_layer_params: int
    dense_params: int
    layers: int

    @property
    def compression(self) -> float:
        return self.dense_layer_params / max(self.layer_params, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "compression": self.compression}

    def __str__(self) -> str:
        rows = [("unique parameters", self.unique_params), ("  embeddings", self.embeddings),
                ("  layer stack", self.layer_params), ("    shared", self.shared),
                ("    low-rank", self.lowrank), ("    diagonal", self.diagonal),
                ("    other", self.other), ("  head and rest", self.head),
                ("dense equivalent", self.dense_params),
                ("dense layer stack", self.dense_layer_params),
                ("layers (positions)", self.layers)]
        lines = [f"{name:<22}{value:>14,}" for name, value in rows]
        return "\n".join(lines + [f"{'layer compression':<22}{self.compression:>13.2f}x"])


def _stack_paths(model: nn.Module) -> list[str]:
    converted = getattr(model, "layershare_stacks_converted", None)
    if converted:
        return [s.path for s in converted]
    from .surgery import stack_specs  # a dense model: its architecture's default stacks
    return [s.path for s in stack_specs(model)]


def _role(module: nn.Module, pname: str, users: int) -> str:
    if isinstance(module, (ResidualLinear, LowRankLinear)):
        if pname == "diag":
            return "diagonal"
        if pname == "shared" or (pname == "lora_B" and users > 1):  # a shared basis
            return "shared"
        if pname in ("lora_A", "lora_B"):
            return "lowrank"
    return "shared" if users > 1 else "other"


def count(model: nn.Module) -> ParamCount:
    """Count ``model``'s unique parameters (converted or dense); see the module docstring."""
    layer_lists = [model.get_submodule(p) for p in _stack_paths(model)]
    users: dict[int, set[int]] = {}  # parameter id -> the layers that hold it
    for layers in layer_lists:
        for layer in layers:
            for p in layer.parameters():
                users.setdefault(id(p), set()).add(id(layer))

    c = dict(embeddings=0, shared=0, lowrank=0, diagonal=0, other=0, head=0)
    seen: set[int] = set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            if id(p) in users:
                c[_role(module, pname, len(users[id(p)]))] += p.numel()
            else:
                c["embeddings" if isinstance(module, nn.Embedding) else "head"] += p.numel()

    dense_layers = sum(_dense_layer_size(layer) for layers in layer_lists for layer in layers)
    layer_params = c["shared"] + c["lowrank"] + c["diagonal"] + c["other"]
    unique = layer_params + c["embeddings"] + c["head"]
    return ParamCount(unique_params=unique, layer_params=layer_params,
                      dense_layer_params=dense_layers,
                      dense_params=unique - layer_params + dense_layers,
                      layers=sum(len(layers) for layers in layer_lists), **c)


def _dense_layer_size(layer: nn.Module) -> int:
    """Parameters of one layer as if nothing were shared: converted matrices count m n."""
    total, seen = 0, set()
    for module in layer.modules():
        if isinstance(module, (ResidualLinear, LowRankLinear)):
            total += module.out_features * module.in_features
            seen.update(id(p) for p in module.parameters() if p is not module.bias)
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total
