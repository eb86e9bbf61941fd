"""Apply a DLT state vector to a model's layer stack: whole-block tying and real untying.

Hay & Wolf (ICLR 2024) tie whole Transformer blocks: layer ``i`` with ``s_i = j < i`` computes
with layer ``j``'s weights. Here that is layershare's ``tied`` mechanism (surgery._tie): every
parameter slot of layer ``i`` (``module._parameters[name]``, for every module inside the
layer: projections, biases, norms) holds the *same* ``nn.Parameter`` object as the matching
slot of its root layer, where the root follows the chain ``s_i = j, s_j = k, ...`` down to a
layer with ``s_r = r``. One tensor, used at several depths: autograd sums the gradients of
every use into it, ``dL/dW = sum_{i: root(i) = r} dL/dW_i``, and the optimizer sees it once.

Untying layer ``i`` (its root changes from ``q != i`` to ``i``) gives it
``nn.Parameter(W_q.detach().clone())``: a real copy of its former source's current weights,
with its own memory. The official code ties by assigning ``.data`` and freezing the copy:
the tied layer's uses then send no gradient to the shared weights, and an untied layer stays
aliased to its former source's storage (so, after a later untie, two "independent" blocks
share one storage, updated by two AdamW states). Here, with ``tie="shared"`` (default),
both uses train the one tensor (ALBERT's semantics, layershare's ``tied``) and ``.data`` is
never touched.

``tie="frozen-copy"``: the official semantics without the aliasing: a tied layer still holds
its root's ``nn.Parameter`` objects (so saving, counting and the optimizer see one tensor,
exactly as with ``shared``), but a forward pre-hook swaps in ``p.detach()`` for the duration
of the tied layer's forward: the layer computes with the root's *live* weights, its input
still receives gradients, its weights none -- ``dL/dW_r`` is the root's own use only.
Untying is the same real copy in both modes.

Applying a state is idempotent (layers whose root does not change keep their objects), and
only layers whose root changes are touched, so the optimizer keeps its state for every
parameter that survives (see :mod:`layershare.dlt.optim`).

Saving: :meth:`TiedStack.share_config` is the ``ShareConfig(method="tied", strategy=[root of
each layer])`` that ``layershare.convert``/``load`` turn into the same tying, so
:func:`save` writes each unique layer once and ``layershare.load`` rebuilds the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..arch import default_stacks, find_stack
from ..config import ShareConfig
from ..errors import LayershareError
from ..plan import SharingPlan
from ..surgery import Stack, stack_specs

_MARKS = ("layershare_config", "layershare_stacks_converted")
TIES = ("shared", "frozen-copy")


def _detach_during_forward(layer: nn.Module, holders) -> tuple:
    """Hooks that make ``layer`` compute with detached copies of its parameters (same
    storage, no gradient) and restore the shared objects afterwards (also after an error)."""
    saved: list = []

    def before(module, args):
        saved[:] = [(m, slot, m._parameters[slot]) for _, m, slot in holders]
        for m, slot, p in saved:
            m._parameters[slot] = nn.Parameter(p.detach(), requires_grad=False)

    def after(module, args, output):
        for m, slot, p in saved:
            m._parameters[slot] = p
        saved.clear()

    return (layer.register_forward_pre_hook(before),
            layer.register_forward_hook(after, always_call=True))


def check_state(state, num_layers: int) -> list[int]:
    """``state`` as a list of ints after checking ``len = L``, ``s_0 = 0``, ``0 <= s_i <= i``."""
    state = [int(s) for s in state]
    if len(state) != num_layers:
        raise LayershareError(f"a state needs one entry per layer ({num_layers}), got {len(state)}")
    bad = [i for i, s in enumerate(state) if not 0 <= s <= i]
    if bad:
        raise LayershareError(f"state {state}: layer i may only be tied to a layer j < i "
                              f"(or be independent, s_i = i); bad layers {bad}")
    return state


def roots(state) -> list[int]:
    """The independent layer each layer computes with: ``root(i) = i if s_i = i else
    root(s_i)`` (well founded since ``s_i < i``)."""
    out: list[int] = []
    for i, s in enumerate(check_state(state, len(state))):
        out.append(i if s == i else out[s])
    return out


def _holders(layer: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(qualified name, module, slot name) of every parameter slot inside ``layer``."""
    return [(f"{mname}.{leaf}" if mname else leaf, module, leaf)
            for mname, module in layer.named_modules()
            for leaf, p in module._parameters.items() if p is not None]


class TiedStack:
    """The layer stack at ``path`` of ``model`` (default: the architecture's only stack) and
    its current tying state."""

    def __init__(self, model: nn.Module, path: str | None = None, tie: str = "shared"):
        if tie not in TIES:
            raise LayershareError(f"unknown tie mode {tie!r}; choose one of {', '.join(TIES)}")
        self.tie = tie
        self.hooks: dict[int, tuple] = {}  # frozen-copy: layer -> its two hook handles
        config = getattr(model, "layershare_config", None)
        if config is not None and config.method != "tied":
            raise LayershareError(f"dynamic layer tying needs a dense or tied model, this one is "
                                  f"converted with method={config.method!r}")
        if path is None:
            specs = default_stacks(model)
            if len(specs) != 1:
                raise LayershareError(f"{type(model).__name__} has {len(specs)} layer stacks "
                                      f"({', '.join(s.path for s in specs)}): pass the one to tie")
            path = specs[0].path
        self.model = model
        self.path, self.layers = find_stack(model, path)
        self.holders = [_holders(layer) for layer in self.layers]
        modules = [id(m) for hs in self.holders for m in {m for _, m, _ in hs}]
        if len(modules) != len(set(modules)):  # a tie would then also move other layers
            raise LayershareError(f"layers of {self.path} share module objects: dynamic layer "
                                  "tying needs one module tree per layer")
        first = [(n, tuple(m._parameters[s].shape)) for n, m, s in self.holders[0]]
        for i, hs in enumerate(self.holders):
            if [(n, tuple(m._parameters[s].shape)) for n, m, s in hs] != first:
                raise LayershareError(f"layer {i} of {self.path} differs in structure from "
                                      "layer 0: whole-block tying needs identical layers")
        self.state = self.read_state()
        self._frozen_hooks()
        self.keep_marks = config is not None  # a loaded tied checkpoint: keep its marks current

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def param(self, layer: int, k: int) -> nn.Parameter:
        _, module, slot = self.holders[layer][k]
        return module._parameters[slot]

    def read_state(self) -> list[int]:
        """The state the model's parameter identities show (each tied layer -> its root);
        an error when a layer shares only part of its parameters."""
        owner: dict[int, int] = {}  # id(parameter) -> first layer holding it
        state = []
        for i in range(self.num_layers):
            first = {owner.get(id(self.param(i, k)), i) for k in range(len(self.holders[i]))}
            if len(first) != 1:
                raise LayershareError(f"layer {i} of {self.path} shares only some of its "
                                      "parameters: dynamic layer tying ties whole layers")
            source = first.pop()
            if source != i and any(self.param(i, k) is not self.param(source, k)
                                   for k in range(len(self.holders[i]))):
                raise LayershareError(f"layer {i} of {self.path} holds layer {source}'s "
                                      "parameters in other slots")
            state.append(source)
            for k in range(len(self.holders[i])):
                owner.setdefault(id(self.param(i, k)), i)
        return state

    def apply(self, state) -> dict[nn.Parameter, nn.Parameter]:
        """Make the stack follow ``state``; returns ``{new copy: the parameter it was cloned
        from}`` for the layers that were untied (empty when nothing was untied)."""
        state = check_state(state, self.num_layers)
        new, old = roots(state), roots(self.state)
        origins: dict[nn.Parameter, nn.Parameter] = {}
        for i in range(self.num_layers):  # ascending: a root is final before its users
            r = new[i]
            for k, (_, module, slot) in enumerate(self.holders[i]):
                if r != i:
                    module._parameters[slot] = self.param(r, k)
                elif old[i] != i:  # untie: a real copy of the former source's current weights
                    src = module._parameters[slot]  # the former root's parameter
                    copy = nn.Parameter(src.detach().clone(), requires_grad=src.requires_grad)
                    module._parameters[slot] = copy
                    origins[copy] = src
        self.state = state
        self._frozen_hooks()
        if self.keep_marks:
            attach(self.model, self)
        return origins

    def _frozen_hooks(self) -> None:
        """frozen-copy: tied layers (root != self) get the detach hooks, others lose them."""
        want = set() if self.tie == "shared" else {i for i, r in enumerate(self.roots()) if r != i}
        for i in list(self.hooks):
            if i not in want:
                for handle in self.hooks.pop(i):
                    handle.remove()
        for i in want - set(self.hooks):
            self.hooks[i] = _detach_during_forward(self.layers[i], self.holders[i])

    def roots(self) -> list[int]:
        return roots(self.state)

    def unique_layers(self) -> int:
        return len(set(self.roots()))

    def layer_params(self) -> int:
        """Parameters of one layer (every layer has the same structure)."""
        return sum(self.param(0, k).numel() for k in range(len(self.holders[0])))

    def share_config(self) -> ShareConfig:
        """The ``tied`` ShareConfig that rebuilds this tying: group id of layer i = root(i)
        (init ``first`` = the group's first layer, which is the root: DLT's semantics)."""
        try:
            specs = default_stacks(self.model)
        except LayershareError:  # an architecture known only through an explicit path
            specs = ()
        own = len(specs) == 1 and find_stack(self.model, specs[0].path)[0] == self.path
        return ShareConfig(method="tied", strategy=self.roots(), init="first", tie_other=True,
                           stack=None if own else self.path)


def attach(model: nn.Module, tied: TiedStack) -> nn.Module:
    """Mark ``model`` as a ``tied`` layershare model with ``tied``'s current plan, as
    ``convert`` would have (``layershare.save``, ``count`` and ``merge`` read these marks)."""
    config = tied.share_config()
    spec = stack_specs(model, config)[0]
    plan = SharingPlan.build(tied.num_layers, strategy=tied.roots())
    model.layershare_config = config
    model.layershare_stacks_converted = (Stack(tied.path, plan, tuple(n for n, _ in spec.linears)),)
    return model


def save(model: nn.Module, directory: str | os.PathLike, tied: TiedStack,
         extra_files: dict[str, Path] | None = None) -> Path:
    """``layershare.save`` of ``model`` with its current tying: each unique layer stored once;
    ``layershare.load(directory)`` rebuilds the same tying. The model's own marks (if any)
    are restored afterwards, so a training run can go on changing the tying."""
    from ..checkpoint import save as core_save

    before = {k: model.__dict__[k] for k in _MARKS if k in model.__dict__}
    try:
        attach(model, tied)
        return core_save(model, directory, extra_files)
    finally:
        for k in _MARKS:
            model.__dict__.pop(k, None)
        model.__dict__.update(before)
