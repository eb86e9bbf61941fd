"""``convert``: rewrite a model's layer stack(s) so that layers share weights.

The model keeps its class, its forward signature, ``generate`` and KV cache: only the
weight matrices of the stack change (``nn.Linear``/``Conv1D`` become ResidualLinear or
LowRankLinear; for ``tied`` the layer's parameters *are* the source layer's parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .arch import KINDS, StackSpec, default_stacks, explicit_stack, find_stack
from .config import ShareConfig
from .errors import LayershareError
from .lowrank import LowRankLinear
from .plan import SharingPlan
from .residual import ResidualLinear
from .slots import Slot
from .svd import pick_shared, random_factors, shared_basis


@dataclass(frozen=True)
class Stack:
    """One converted stack: where it is, its plan, and the matrix names converted."""

    path: str
    plan: SharingPlan
    linears: tuple[str, ...]

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.path)


def stack_specs(model: nn.Module, config: ShareConfig | None = None) -> list[StackSpec]:
    """The stacks to convert: the user's explicit one, or the architecture's defaults."""
    if config is not None and config.stack is not None:
        return [explicit_stack(model, config.stack, config.linears)]
    return [StackSpec(find_stack(model, s.path)[0], s.linears) for s in default_stacks(model)]


def _selected(names_kinds, matrices) -> tuple[str, ...]:
    chosen = []
    for name, kinds in names_kinds:
        known = [k for k in kinds if k in KINDS]
        picked = [k for k in known if k in matrices]
        if picked and len(picked) != len(known):
            raise LayershareError(f"{name!r} holds {'+'.join(known)} fused: select all of them or none")
        if picked or not known:
            chosen.append(name)
    if not chosen:
        raise LayershareError(f"no matrix selected (matrices={list(matrices)})")
    return tuple(chosen)


def convert(model: nn.Module, method: str = "residual", **options) -> nn.Module:
    """Share weights across the layers of ``model`` (in place; the model is returned).

    ``options`` are the fields of :class:`~layershare.config.ShareConfig`: ``group_size``,
    ``rank``, ``strategy``, ``init``, ``diag``, ``matrices``, ``tie_other``, ``stack``,
    ``linears``. Weights are initialised from the model's current (dense) weights, see
    ResidualLinear.fit, LowRankLinear and svd.pick_shared.
    """
    if not isinstance(model, nn.Module):
        raise LayershareError(f"convert expects a torch nn.Module, got {type(model).__name__}")
    if getattr(model, "layershare_config", None) is not None:
        raise LayershareError("this model is converted already; merge it first")
    config = options.pop("config", None) or ShareConfig(method=method, **options)
    stacks = []
    for spec in stack_specs(model, config):
        layers = model.get_submodule(spec.path)
        plan = SharingPlan.build(len(layers), config.group_size, config.strategy)
        names = _selected(spec.linears, config.matrices)
        with torch.no_grad():
            for name in names:
                slots = [Slot(layer, name) for layer in layers]
                if config.method == "tied":
                    for i in range(len(slots[0].tensors())):
                        _tie(config, plan, [s.tensors()[i] for s in slots])
                else:
                    _share_matrix(config, plan, slots)
            if config.method == "tied" and config.tie_other:
                for holders in _other_parameters(layers, names):
                    _tie(config, plan, holders)
        stacks.append(Stack(spec.path, plan, names))
    model.layershare_config = config
    model.layershare_stacks_converted = tuple(stacks)
    return model


def _share_matrix(config: ShareConfig, plan: SharingPlan, slots: list[Slot]) -> None:
    """Replace one matrix of every layer (``slots[l]``) by its residual or low-rank form."""
    dense = [s.weight().detach() for s in slots]
    m, n = dense[0].shape
    rank = min(config.rank, m, n)
    for group in range(plan.num_groups):
        members = plan.members(group)
        if config.method == "residual":
            value = pick_shared([dense[l] for l in members], config.init, group,
                                plan.num_groups, dense)
            shared = nn.Parameter(value.contiguous())
            for l in members:
                new = ResidualLinear(shared, rank, slots[l].bias(), config.diag, slots[l].conv1d)
                if config.init != "scratch":
                    new.fit(dense[l])
                slots[l].install(new)
        else:  # lowrank: a basis shared by the group (Basis Sharing), coefficients per layer
            weights = [dense[l] for l in members]
            basis, coeffs = (random_factors(weights, rank) if config.init == "scratch"
                             else shared_basis(weights, rank))
            basis = nn.Parameter(basis.contiguous())
            for l, coeff in zip(members, coeffs):
                diag = torch.diagonal(dense[l] - basis @ coeff) if config.diag else None
                slots[l].install(LowRankLinear(basis, coeff.contiguous(), slots[l].bias(), diag,
                                               slots[l].conv1d))


def _tie(config: ShareConfig, plan: SharingPlan, holders: list[tuple[nn.Module, str]]) -> None:
    """Tied: every layer of a group holds one Parameter (``holders[l]`` = (module, name))."""
    originals = [getattr(module, name) for module, name in holders]
    for group in range(plan.num_groups):
        members = plan.members(group)
        value = pick_shared([originals[l] for l in members], config.init, group,
                            plan.num_groups, originals)
        shared = nn.Parameter(value.contiguous(), requires_grad=originals[0].requires_grad)
        for l in members:
            module, name = holders[l]
            module._parameters[name] = shared


def _other_parameters(layers: nn.ModuleList, names: tuple[str, ...]):
    """(module, name) per layer of each parameter outside the converted matrices (norms...)."""
    inside = tuple(f"{n}." for n in names) + tuple(
        n.replace("in_proj_weight", "in_proj_bias") for n in names if n.endswith("in_proj_weight"))
    for pname, _ in list(layers[0].named_parameters()):
        if pname in names or pname.startswith(inside):
            continue
        mod_name, _, leaf = pname.rpartition(".")
        yield [(layer.get_submodule(mod_name), leaf) for layer in layers]
