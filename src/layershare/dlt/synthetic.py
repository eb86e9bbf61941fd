"""A model-free environment for the DLT agent: the loss is a known function of the tying.

Why: whether an agent *follows its reward* can only be tested where the right answer is
known. Here no model is trained; after each action the loss the controller is given is

    loss = base + delta * (L - unique layers) + trend * exp(-t / T) + noise,   noise ~ N(0, sigma)

so tying costs ``delta`` per tied layer (``delta > 0``: the optimum is every layer
independent, ``L`` unique; ``delta < 0``: one unique layer; ``delta = 0``: the tying does not
matter and the converged tying must not depend on how the state is encoded). ``trend`` adds
the decay of a training run (the part of the reward that no action causes), ``sigma`` the
batch-to-batch noise. The real :class:`~layershare.dlt.DLTController` and
:class:`~layershare.dlt.Agent` run unchanged on a :class:`SyntheticStack` (a state vector, no
tensors), so one run of a few hundred actions takes well under a second.

Used by the tests G1/G2 (``tests/dlt/test_dlt_synthetic.py``) and ``benchmarks/bench_dlt.py``.
"""

from __future__ import annotations

import math
import random

from .config import DLTConfig
from .controller import DLTController
from .tying import check_state, roots


class SyntheticStack:
    """The parts of :class:`~layershare.dlt.TiedStack` the controller uses, for a state
    vector only."""

    def __init__(self, num_layers: int):
        self.num_layers = num_layers
        self.state = list(range(num_layers))

    def apply(self, state) -> dict:
        self.state = check_state(state, self.num_layers)
        return {}

    def roots(self) -> list[int]:
        return roots(self.state)

    def unique_layers(self) -> int:
        return len(set(self.roots()))

    def layer_params(self) -> int:
        return 1


def floor_decay(actions: int, num_layers: int, at: float = 0.3, start: float = 1.0,
                floor: float = 0.01) -> float:
    """The ``epsilon_decay`` that brings epsilon from ``start`` to ``floor`` after the
    fraction ``at`` of a run of ``actions`` actions (``L - 1`` actions per episode)."""
    episodes = max(1.0, at * actions / (num_layers - 1))
    return (floor / start) ** (1.0 / episodes)


def run(config: DLTConfig, delta: float, num_layers: int = 6, actions: int = 500,
        base: float = 2.0, sigma: float = 0.02, trend: float = 0.0, seed: int = 0,
        tail: float = 0.2) -> dict:
    """One synthetic run; returns the mean unique layers over the last ``tail`` of the
    actions (``tail_unique``), the final state's (``final_unique``) and the whole curve.
    ``config.seed`` is replaced by ``seed`` (agent) and the noise uses ``seed`` too."""
    config = config.model_copy(update={"seed": seed})
    stack = SyntheticStack(num_layers)
    controller = DLTController(None, None, config, stack=stack)
    noise = random.Random(10_000 + seed)
    curve = []
    for a in range(actions):
        t = a / max(1, actions - 1)
        loss = (base + delta * (num_layers - stack.unique_layers())
                + trend * math.exp(-5 * t) + noise.gauss(0.0, sigma))
        controller.on_step((a + 1) * config.steps_per_action, lambda: loss)
        curve.append(stack.unique_layers())
    k = max(1, round(tail * actions))
    return {"tail_unique": sum(curve[-k:]) / k, "final_unique": stack.unique_layers(),
            "curve": curve, "state": list(stack.state)}


def mean_unique(config: DLTConfig, delta: float, seeds=range(5), **kw) -> float:
    """``tail_unique`` averaged over ``seeds``: the converged tying, robust to one seed."""
    values = [run(config, delta, seed=s, **kw)["tail_unique"] for s in seeds]
    return sum(values) / len(values)
