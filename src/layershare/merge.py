"""``merge``: a converted model back to a plain dense model of the original class.

Every ResidualLinear/LowRankLinear becomes the ``nn.Linear`` (or GPT-2 ``Conv1D``, or
``in_proj_weight``) it replaced, holding its merged weight; tied layers get their own copies.
A transformers model's ``save_pretrained`` output then loads with transformers alone.
"""

from __future__ import annotations

import copy

from torch import nn

from .bank import detach as detach_banks
from .lowrank import LowRankLinear
from .residual import ResidualLinear
from .slots import dense_module, restore_in_proj


def merge(model: nn.Module, inplace: bool = True) -> nn.Module:
    """The dense equivalent of ``model``: every shared or factored matrix written out per
    layer, the original classes back. As ``convert``: changes the model you pass and returns
    it; ``inplace=False`` merges a deep copy and leaves the shared model as it was."""
    stacks = getattr(model, "layershare_stacks_converted", None)
    if not stacks:
        return model if inplace else copy.deepcopy(model)
    model = model if inplace else copy.deepcopy(model)
    detach_banks(model)
    for stack in stacks:
        seen: set[int] = set()
        for layer in stack.layers(model):
            _densify(layer)
            for module in layer.modules():  # untie: one tensor per layer again
                for name, p in list(module._parameters.items()):
                    if p is not None and id(p) in seen:
                        module._parameters[name] = nn.Parameter(p.detach().clone(), p.requires_grad)
                    elif p is not None:
                        seen.add(id(p))
    del model.layershare_config, model.layershare_stacks_converted
    model.__dict__.pop("save_pretrained", None)  # surgery.refuse_save_pretrained
    return model


def _densify(layer: nn.Module) -> None:
    converted = [(name, m) for name, m in layer.named_modules()
                 if isinstance(m, (ResidualLinear, LowRankLinear))]
    for name, module in converted:
        parent_name, _, leaf = name.rpartition(".")
        parent = layer.get_submodule(parent_name) if parent_name else layer
        if leaf == "in_proj" and isinstance(parent, nn.MultiheadAttention):
            restore_in_proj(layer, parent_name)
        else:
            setattr(parent, leaf, dense_module(module))
