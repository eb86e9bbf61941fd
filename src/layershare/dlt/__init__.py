"""Dynamic Layer Tying (Hay & Wolf, "Dynamic Layer Tying for Parameter-Efficient
Transformers", ICLR 2024, arXiv 2401.12819): a Q-learning agent that, every few training steps,
decides for one layer whether it trains on its own or reuses the weights of an earlier layer.

* :mod:`.config` -- :class:`DLTConfig`, every constant (paper defaults, presets ``paper`` and
  ``honest``; its docstring lists where the defaults differ from the official code);
* :mod:`.agent` -- Q-network, action slices, epsilon schedule, TD update;
* :mod:`.tying` -- apply a state vector to a model's stack (tie = same tensors, untie = copy),
  save with unique layers only;
* :mod:`.optim` -- keep the optimizer's parameters and state equal to the unique parameters;
* :mod:`.controller` -- :class:`DLTController`, the training-loop plugin, and its JSONL log;
* :mod:`.plot` -- the layers x episodes heatmap;
* :mod:`.synthetic` -- a model-free environment with a known optimum, to test whether an agent
  follows its reward.
"""

from .agent import Agent, QNetwork, action_slice, epsilon_at, next_layer, num_actions
from .config import DLTConfig
from .controller import DLTController, reward_from_loss
from .optim import SyncReport, state_tensors, sync_optimizer
from .plot import episode_states, plot_heatmap, read_log
from .tying import TiedStack, attach, roots, save

__all__ = ["DLTConfig", "DLTController", "Agent", "QNetwork", "action_slice", "epsilon_at",
           "next_layer", "num_actions", "reward_from_loss", "TiedStack", "attach", "roots",
           "save", "sync_optimizer", "state_tensors", "SyncReport", "plot_heatmap",
           "episode_states", "read_log"]
