"""Keep an optimizer's parameters (and state) equal to the model's unique parameters.

After a tying change the model holds a different set of tensors: a tied layer dropped its own
parameters (they must leave the optimizer, or AdamW would keep ``exp_avg``/``exp_avg_sq`` --
two extra copies of every weight -- and the tensors themselves alive), an untied layer holds
new copies (they must enter it with *fresh* state: moments estimated on the source's gradient
history are not this layer's, and Adam's bias correction restarts at step 1). This is where
DLT's memory saving comes from: per unique parameter, weights + gradient + 2 Adam moments.

:func:`sync_optimizer` edits the optimizer in place (learning-rate schedulers and the training
loop keep their references to it and to its ``param_groups`` dicts):

* a parameter still in the model keeps its state (by identity) and, by default, its group;
* a parameter no longer in the model is removed with its state, and its ``.grad`` is freed;
* a new parameter starts with no state; its group is the group of the parameter it was cloned
  from (``origins``, as :meth:`TiedStack.apply` returns it: a copy of a matrix lands in the
  weight-decay group, a copy of a norm in the no-decay group), or ``group_of(name, param)``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import LayershareError


@dataclass
class SyncReport:
    kept: int      # parameters that stayed, with their state
    added: int     # new parameters (no state until the next step)
    dropped: int   # parameters removed with their state and gradient


def state_tensors(optimizer: torch.optim.Optimizer, keys=("exp_avg", "exp_avg_sq")) -> int:
    """How many optimizer-state tensors exist (``keys=None``: every tensor, ``step`` too)."""
    return sum(1 for st in optimizer.state.values() for k, v in st.items()
               if torch.is_tensor(v) and (keys is None or k in keys))


def sync_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module,
                   origins: dict[nn.Parameter, nn.Parameter] | None = None,
                   group_of: Callable[[str, nn.Parameter], int | None] | None = None) -> SyncReport:
    """Make ``optimizer`` hold exactly the model's trainable unique parameters it manages.

    Without ``group_of``, the managed parameters are those already in the optimizer plus the
    copies in ``origins`` whose source was in it (a parameter the caller left out, e.g. a
    frozen embedding, stays out). With ``group_of``, every trainable parameter of the model
    goes to group ``group_of(name, p)``, or nowhere when it returns None.
    """
    groups = optimizer.param_groups
    where = {p: g for g, group in enumerate(groups) for p in group["params"]}
    members: list[list[nn.Parameter]] = [[] for _ in groups]
    for name, p in model.named_parameters():  # each tensor once, in model order
        if not p.requires_grad:
            continue
        if group_of is not None:
            g = group_of(name, p)
        elif p in where:
            g = where[p]
        else:
            g = where.get((origins or {}).get(p))
        if g is None:
            continue
        if not 0 <= g < len(groups):
            raise LayershareError(f"group_of({name!r}) = {g}: the optimizer has "
                                  f"{len(groups)} groups")
        members[g].append(p)

    live = {p for ps in members for p in ps}
    dropped = [p for p in where if p not in live]
    for p in dropped:
        p.grad = None  # the model no longer uses it: free the gradient with the state
    state = defaultdict(dict)
    for p in live:
        if p in optimizer.state:
            state[p] = optimizer.state[p]
    optimizer.state = state
    for group, ps in zip(groups, members):
        group["params"] = ps
    added = sum(1 for p in live if p not in where)
    return SyncReport(kept=len(live) - added, added=added, dropped=len(dropped))
