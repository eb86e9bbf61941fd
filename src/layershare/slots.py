"""Reading and replacing one weight matrix inside a layer, whatever module holds it.

Three holders occur in the supported architectures:

* ``nn.Linear`` -- weight (out x in);
* transformers' ``Conv1D`` (GPT-2) -- weight stored transposed, (in x out);
* ``nn.MultiheadAttention.in_proj_weight`` -- a bare fused q/k/v parameter (3d x d) that the
  attention reads as an attribute. It is replaced by a child module ``in_proj`` and a forward
  pre-hook on the layer that sets ``in_proj_weight``/``in_proj_bias`` from it before every
  forward (the way torch's classic ``weight_norm`` worked). The hook sits on the layer, not on
  the attention, because ``nn.TransformerEncoderLayer``'s fused inference path reads the
  weight without calling the attention's forward.

Every replacement module (ResidualLinear, LowRankLinear) follows ``nn.Linear``'s layout and
remembers a Conv1D origin, so :func:`dense_module` can give the original class back.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from .errors import LayershareError

IN_PROJ = "in_proj_weight"


def _split(name: str) -> tuple[str, str]:
    parent, _, leaf = name.rpartition(".")
    return parent, leaf


def is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


class Slot:
    """Weight matrix ``name`` (relative to ``layer``)."""

    def __init__(self, layer: nn.Module, name: str):
        self.layer, self.name = layer, name
        parent, leaf = _split(name)
        try:
            self.parent = layer.get_submodule(parent) if parent else layer
            self.module = None if leaf == IN_PROJ else self.parent.get_submodule(leaf)
        except AttributeError as exc:
            raise LayershareError(f"layer {type(layer).__name__} has no module {name!r}") from exc
        if leaf == IN_PROJ:
            if (not isinstance(self.parent, nn.MultiheadAttention)
                    or self.parent.in_proj_weight is None):
                raise LayershareError(f"{name!r} is not a fused nn.MultiheadAttention projection")
        elif not (isinstance(self.module, nn.Linear) or is_conv1d(self.module)):
            raise LayershareError(f"{name!r} is a {type(self.module).__name__}, not a linear layer "
                                  "(already converted?)")
        self.leaf = leaf

    @property
    def conv1d(self) -> bool:
        return self.module is not None and is_conv1d(self.module)

    def weight(self) -> Tensor:
        """The dense weight in ``nn.Linear`` layout (out x in)."""
        if self.module is None:
            return self.parent.in_proj_weight
        return self.module.weight.t() if self.conv1d else self.module.weight

    def bias(self) -> Tensor | None:
        return self.parent.in_proj_bias if self.module is None else self.module.bias

    def tensors(self) -> list[tuple[nn.Module, str]]:
        """(holder, parameter name) of the weight and bias, for tying."""
        holder = self.parent if self.module is None else self.module
        names = ("in_proj_weight", "in_proj_bias") if self.module is None else ("weight", "bias")
        return [(holder, n) for n in names if getattr(holder, n) is not None]

    def install(self, new: nn.Module) -> None:
        """Put ``new`` (an nn.Linear-like module) where the dense weight was, in the training
        mode of the module it replaces (a model in eval mode stays in eval mode)."""
        new.train((self.parent if self.module is None else self.module).training)
        if self.module is not None:
            setattr(self.parent, self.leaf, new)
            return
        mha = self.parent
        del mha.in_proj_weight
        if mha.in_proj_bias is not None:
            del mha.in_proj_bias
        mha.in_proj = new
        _refresh_in_proj(mha, (), "")

        # A partial of a module-level function (not a closure) so that deepcopy and pickle
        # of the model keep pointing the hook at the copy's own attention.
        self.layer.register_forward_pre_hook(
            functools.partial(_refresh_in_proj, path=_split(self.name)[0]))


def _refresh_in_proj(layer: nn.Module, _args, path: str) -> None:
    mha = layer.get_submodule(path) if path else layer
    # Plain attributes, not registered parameters: written to __dict__ directly because
    # nn.Module.__setattr__ would register a Parameter (the bias) as the attention's own.
    mha.__dict__["in_proj_weight"] = mha.in_proj.weight
    mha.__dict__["in_proj_bias"] = mha.in_proj.bias


def dense_module(module: nn.Module) -> nn.Module:
    """A plain ``nn.Linear`` (or ``Conv1D``) with ``module``'s merged weight and bias."""
    weight = module.merged_weight().detach().clone()
    bias = None if module.bias is None else module.bias.detach().clone()
    if module.conv1d:
        from transformers.pytorch_utils import Conv1D
        dense = Conv1D(module.out_features, module.in_features).to(weight)
        dense.weight = nn.Parameter(weight.t().contiguous())
        dense.bias = nn.Parameter(bias if bias is not None else torch.zeros_like(dense.bias))
        return dense
    dense = nn.Linear(module.in_features, module.out_features, bias=bias is not None,
                      device=weight.device, dtype=weight.dtype)
    dense.weight = nn.Parameter(weight)
    if bias is not None:
        dense.bias = nn.Parameter(bias)
    return dense


def restore_in_proj(layer: nn.Module, path: str) -> None:
    """Undo :meth:`Slot.install` for the attention at ``path`` in ``layer``."""
    hooks = layer._forward_pre_hooks
    for key in [k for k, h in hooks.items() if getattr(h, "func", None) is _refresh_in_proj
                and h.keywords["path"] == path]:
        del hooks[key]
    mha = layer.get_submodule(path) if path else layer
    dense = dense_module(mha.in_proj)
    del mha.in_proj
    del mha.__dict__["in_proj_weight"], mha.__dict__["in_proj_bias"]
    mha.in_proj_weight = dense.weight
    mha.in_proj_bias = dense.bias
