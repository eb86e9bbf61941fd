"""Layer-by-layer calibration: run a stack one block at a time on stored activations.

GPTQ-style compressors bound memory and correct upstream error the same way: the inputs of
the stack's first layer are captured once for the calibration batches; then, block by block,
the block's layers run on those activations with Gram hooks on (dense weights), the block is
compressed, and its outputs become the next block's inputs. In *sequential* mode the outputs
come from the compressed block, so block b is fitted to what the already compressed blocks
0..b-1 really produce; otherwise from the dense block, so every block sees the original
model's activations.

A block is the shortest run of consecutive layers that holds whole sharing groups: one group
for ``sequence`` plans (K layers), the whole stack for ``cycle`` plans (every group spans it).
Beside the model, memory holds one block's Gram matrices and the calibration activations
(tokens x d), never a dense copy of another layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..plan import SharingPlan


class _Captured(Exception):
    """Raised by the capture hook to stop the model at the stack's first layer."""


@dataclass
class Activations:
    """The stack's layer inputs for each calibration batch: the hidden states (args[0]) and
    the rest of the call (attention mask, position embeddings...) as the model passed them."""

    hidden: list[Tensor]
    args: list[tuple]
    kwargs: list[dict]


def capture_inputs(model: nn.Module, layers: nn.ModuleList, batches: list[dict]) -> Activations:
    """Run ``model(**batch)`` up to ``layers[0]`` and keep what the layer would receive."""
    acts = Activations([], [], [])

    def hook(_module, args, kwargs):
        hidden = args[0] if args else kwargs.pop("hidden_states")
        acts.hidden.append(hidden.detach())
        acts.args.append(tuple(args[1:]))
        acts.kwargs.append(dict(kwargs))
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for batch in batches:
                try:
                    model(**batch, use_cache=False) if _takes_use_cache(model) else model(**batch)
                except _Captured:
                    pass
    finally:
        handle.remove()
    return acts


def _takes_use_cache(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return config is not None and hasattr(config, "use_cache")


def run_layer(layer: nn.Module, acts: Activations) -> list[Tensor]:
    """``layer`` applied to every stored batch; the new hidden states."""
    out = []
    with torch.no_grad():
        for hidden, args, kwargs in zip(acts.hidden, acts.args, acts.kwargs):
            y = layer(hidden, *args, **kwargs)
            out.append((y[0] if isinstance(y, (tuple, list)) else y).detach())
    return out


def blocks(plan: SharingPlan) -> list[tuple[list[int], list[int]]]:
    """(layers, groups) of each block: shortest runs of consecutive layers holding whole groups."""
    result, start, reach, groups = [], 0, -1, []
    for layer in range(plan.num_layers):
        group = plan.groups[layer]
        if group not in groups:
            groups.append(group)
        reach = max(reach, max(plan.members(group)))
        if reach == layer:
            result.append((list(range(start, layer + 1)), groups))
            start, groups = layer + 1, []
    return result
