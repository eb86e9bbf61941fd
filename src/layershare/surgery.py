"""``convert``: rewrite a model's layer stack(s) so that layers share weights.

The model keeps its class, its forward signature, ``generate`` and KV cache: only the
weight matrices of the stack change (``nn.Linear``/``Conv1D`` become ResidualLinear or
LowRankLinear; for ``tied`` the layer's parameters *are* the source layer's parameters).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from .arch import KINDS, StackSpec, default_stacks, explicit_stack, find_stack
from .bank import attach as attach_banks
from .config import ShareConfig
from .errors import LayershareError
from .lowrank import LowRankLinear
from .plan import SharingPlan
from .residual import ResidualLinear
from .slots import Slot
from .svd import pick_shared, random_factors, shared_basis, stepwise_layer


@dataclass(frozen=True)
class Stack:
    """One converted stack: where it is, its plan, and the matrix names converted."""

    path: str
    plan: SharingPlan
    linears: tuple[str, ...]

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return model.get_submodule(self.path)


def stack_role(path: str) -> str | None:
    """``encoder`` or ``decoder`` when a component of the stack's path names one, else None."""
    parts = path.split(".")
    if any("decoder" in p for p in parts):
        return "decoder"
    if any("encoder" in p for p in parts):
        return "encoder"
    return None


def stack_specs(model: nn.Module, config: ShareConfig | None = None) -> list[StackSpec]:
    """The stacks to convert: the user's explicit one, or the architecture's defaults
    (those of ``config.stacks``: all, or only the encoder or decoder stack)."""
    if config is not None and config.stack is not None:
        return [explicit_stack(model, config.stack, config.linears)]
    specs = [StackSpec(find_stack(model, s.path)[0], s.linears) for s in default_stacks(model)]
    wanted = "all" if config is None else config.stacks
    if wanted == "all":
        return specs
    chosen = [s for s in specs if stack_role(s.path) == wanted]
    if not chosen:
        raise LayershareError(f"stacks={wanted}: {type(model).__name__} has no {wanted} stack "
                              f"(its stacks: {', '.join(s.path for s in specs)})")
    return chosen


def _selected(names_kinds, matrices) -> tuple[str, ...]:
    chosen = []
    for name, kinds in names_kinds:
        known = [k for k in kinds if k in KINDS]
        picked = [k for k in known if k in matrices]
        if picked and len(picked) != len(known):
            raise LayershareError(f"{name!r} holds {'+'.join(known)} fused: "
                                  "select all of them or none")
        if picked or not known:
            chosen.append(name)
    if not chosen:
        raise LayershareError(f"no matrix selected (matrices={list(matrices)})")
    return tuple(chosen)


class DataFreeFit:
    """Fits from the dense weights alone (``convert``); ``compress.CalibratedFit`` fits the
    same factors in the metric of calibration data. ``slot`` says which matrix is fitted."""

    def residual(self, module: ResidualLinear, weight, slot: Slot) -> None:
        module.fit(weight)

    def basis(self, weights, rank: int, slots: list[Slot]):
        return shared_basis(weights, rank)

    def diagonal(self, residual, slot: Slot):
        return torch.diagonal(residual)


def convert(model: nn.Module, method: str | None = None, *, config: ShareConfig | None = None,
            inplace: bool = True, **options) -> nn.Module:
    """Share weights across the layers of ``model``; returns the converted model.

    Give either a :class:`~layershare.config.ShareConfig` as ``config`` or its fields as
    keywords (``method`` -- default ``residual`` -- ``group_size``, ``rank``, ``strategy``,
    ``init``, ``diag``, ``matrices``, ``tie_other``, ``stack``, ``linears``, ``ranks``,
    ``stacks``); a keyword beside ``config`` that disagrees with it is an error, never
    silently dropped. Weights are initialised from the model's current (dense) weights, see
    ResidualLinear.fit, LowRankLinear and svd.pick_shared.

    The rule of ``convert`` and ``merge``: both change the model you pass and return it
    (as PEFT's ``get_peft_model`` and ``merge_and_unload`` do); ``inplace=False`` works on a
    deep copy and leaves the original as it was.
    """
    if not isinstance(model, nn.Module):
        raise LayershareError(f"convert expects a torch nn.Module, got {type(model).__name__}")
    if config is None:
        config = ShareConfig(method=method or "residual", **options)
    else:
        given = {**options, **({"method": method} if method is not None else {})}
        for key, value in given.items():
            if key not in type(config).model_fields:
                raise LayershareError(f"convert: unknown option {key!r}")
            if getattr(config, key) != value:
                raise LayershareError(f"convert: {key}={value!r} conflicts with config."
                                      f"{key}={getattr(config, key)!r}; give one or the other")
    if not inplace:
        model = copy.deepcopy(model)
    stacks = plan_stacks(model, config)
    for stack in stacks:
        convert_groups(model, config, stack, range(stack.plan.num_groups))
    mark_converted(model, config, stacks)
    return model


def refuse_save_pretrained(*args, **kwargs):
    """``save_pretrained`` of a converted transformers model. Its shared tensors and factor
    modules have no place in the original class's checkpoint format (transformers would
    write keys its class cannot load, or fail on the shared tensors), so it says what to
    call instead; ``merge`` removes this again."""
    raise LayershareError("this model shares weights (layershare): save it with "
                          "layershare.save(model, DIR), or save the dense model with "
                          "layershare.merge(model).save_pretrained(DIR)")


def plan_stacks(model: nn.Module, config: ShareConfig) -> list[Stack]:
    """The stacks ``config`` converts, with their plans and selected matrices (no change yet)."""
    if getattr(model, "layershare_config", None) is not None:
        raise LayershareError("this model is converted already; merge it first")
    stacks = []
    for spec in stack_specs(model, config):
        layers = model.get_submodule(spec.path)
        plan = SharingPlan.build(len(layers), config.group_size, config.strategy)
        stacks.append(Stack(spec.path, plan, _selected(spec.linears, config.matrices)))
    return stacks


def convert_groups(model: nn.Module, config: ShareConfig, stack: Stack, groups,
                   fit: DataFreeFit | None = None) -> None:
    """Convert the layers of ``groups`` (group ids of ``stack.plan``) in place, fitting with
    ``fit`` (default: from the weights alone). ``compress`` calls it block by block."""
    fit = fit or DataFreeFit()
    layers = stack.layers(model)
    groups = list(groups)
    with torch.no_grad():
        for name in stack.linears:
            if config.method == "tied":
                slots = [Slot(layer, name) for layer in layers]
                for i in range(len(slots[0].tensors())):
                    _tie(config, stack.plan, [s.tensors()[i] for s in slots], groups)
            else:
                _share_matrix(config, stack, name, layers, groups, fit)
        if config.method == "tied" and config.tie_other:
            for holders in _other_parameters(layers, stack.linears):
                _tie(config, stack.plan, holders, groups)


def mark_converted(model: nn.Module, config: ShareConfig, stacks: list[Stack]) -> None:
    model.layershare_config = config
    model.layershare_stacks_converted = tuple(stacks)
    if hasattr(type(model), "save_pretrained"):  # a transformers model: see refuse_save_pretrained
        model.save_pretrained = refuse_save_pretrained
    if config.method == "residual":  # batched merges in training (bank.py)
        attach_banks(model)


def _share_matrix(config: ShareConfig, stack: Stack, name: str, layers: nn.ModuleList,
                  groups: list[int], fit: DataFreeFit) -> None:
    """Replace matrix ``name`` of the layers in ``groups`` by its residual or low-rank form.

    Only the groups' own dense weights are read (``stepwise`` reads one more layer's, taken
    before any of ``groups`` is replaced), so a caller converting block by block never needs
    a dense copy of the whole stack.
    """
    plan = stack.plan
    steps = {}
    if config.method == "residual" and config.init == "stepwise":
        for group in groups:
            step = stepwise_layer(group, plan.num_groups, plan.num_layers)
            steps[group] = Slot(layers[step], name).weight().detach()
    for group in groups:
        members = plan.members(group)
        slots = {l: Slot(layers[l], name) for l in members}
        dense = {l: slots[l].weight().detach() for l in members}
        m, n = dense[members[0]].shape
        if config.method == "residual":
            shared = nn.Parameter(pick_shared([dense[l] for l in members], config.init,
                                              steps.get(group)).contiguous())
            for l in members:
                rank = min(config.rank_of(stack.path, name, l), m, n)
                new = ResidualLinear(shared, rank, slots[l].bias(), config.diag, slots[l].conv1d)
                if config.init != "scratch":
                    fit.residual(new, dense[l], slots[l])
                slots[l].install(new)
        else:  # lowrank: a basis shared by the group (Basis Sharing), coefficients per layer
            weights = [dense[l] for l in members]
            rank = min(config.rank_of(stack.path, name, members[0]), m, n)
            basis, coeffs = (random_factors(weights, rank) if config.init == "scratch"
                             else fit.basis(weights, rank, [slots[l] for l in members]))
            basis = nn.Parameter(basis.contiguous())
            for l, coeff in zip(members, coeffs):
                diag = None
                if config.diag:
                    diag = fit.diagonal(dense[l] - basis @ coeff, slots[l])
                slots[l].install(LowRankLinear(basis, coeff.contiguous(), slots[l].bias(), diag,
                                               slots[l].conv1d))


def _tie(config: ShareConfig, plan: SharingPlan, holders: list[tuple[nn.Module, str]],
         groups: list[int]) -> None:
    """Tied: every layer of a group holds one Parameter (``holders[l]`` = (module, name))."""
    originals = [getattr(module, name) for module, name in holders]
    for group in groups:
        members = plan.members(group)
        value = pick_shared([originals[l] for l in members], config.init,
                            originals[stepwise_layer(group, plan.num_groups, len(originals))])
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
