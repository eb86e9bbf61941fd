"""DLTConfig: every constant of Dynamic Layer Tying, with the paper's values as defaults.

Hay & Wolf, "Dynamic Layer Tying for Parameter-Efficient Transformers" (ICLR 2024,
arXiv 2401.12819). The defaults reproduce the official code (see the project's
``shared/notes/anchors.md``): an MLP ``L -> 128 -> L(L+1)/2``, epsilon-greedy from 1.0 decayed
x0.95 per episode to 0.01, one action every 4 optimizer steps, reward ``-perplexity`` clipped to
[-10, 10], TD target ``r + 0.99 max Q(s')``, no replay buffer, no target network.

The random-tying baseline is ``epsilon_start=1, epsilon_decay=1`` (epsilon stays 1: every
action uniform at random); a purely greedy agent is ``epsilon_start=0``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..errors import LayershareError

REWARDS = ("paper", "neg-log-ppl")


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class DLTConfig:
    steps_per_action: int = _f(4, "optimizer steps between two agent actions (paper: 4)")
    epsilon_start: float = _f(1.0, "exploration rate of the first episode (paper: 1.0)")
    epsilon_decay: float = _f(0.95, "epsilon is multiplied by this after every episode "
                                     "(paper: 0.95; 1.0 keeps it constant: with "
                                     "epsilon_start=1 that is the random-tying baseline)")
    epsilon_min: float = _f(0.01, "floor of epsilon (paper: 0.01)")
    gamma: float = _f(0.99, "discount of the TD target r + gamma max Q(s') (paper: 0.99)")
    hidden: int = _f(128, "hidden width of the Q-network MLP L -> hidden -> L(L+1)/2 (paper: 128)")
    q_lr: float = _f(1e-3, "Adam learning rate of the Q-network. 1e-3 (Adam's default): the agent "
                           "makes one TD update per action, i.e. only steps/steps_per_action "
                           "updates in a whole run (2,500 for 10k steps), so the small rates of "
                           "replay-based DQN (1e-4 to 2.5e-4 over millions of updates) would "
                           "leave Q near its initialisation; Adam bounds each step by ~lr, so "
                           "1e-3 stays stable with rewards in [-10, 10]")
    reward: str = _f("paper", "paper: r = clip(-perplexity, -clip, clip) on one training batch "
                              "(constant -clip, i.e. no signal, while perplexity > clip); "
                              "neg-log-ppl: r = clip(-loss, -clip, clip) = -log perplexity, which "
                              "ranks actions the same way (log is monotone) and still "
                              "discriminates at perplexity 1e3 or 1e4")
    reward_clip: float = _f(10.0, "rewards are clipped to [-reward_clip, reward_clip] (paper: 10)")
    target_network: bool = _f(False, "bootstrap max Q(s') from a lagged copy of the Q-network "
                                     "(Mnih et al., 2015) instead of the network being trained; "
                                     "the paper has none")
    target_sync: int = _f(50, "with target_network: copy the Q-network into the target every "
                              "this many TD updates")
    seed: int = _f(0, "seed of the agent (Q-network initialisation, exploration); the agent "
                      "has its own generators and never touches the global torch RNG stream "
                      "of training")

    def __post_init__(self):
        if type(self.steps_per_action) is not int or self.steps_per_action < 1:
            raise LayershareError(f"dlt.steps_per_action must be an integer >= 1, "
                                  f"got {self.steps_per_action!r}")
        if type(self.hidden) is not int or self.hidden < 1:
            raise LayershareError(f"dlt.hidden must be an integer >= 1, got {self.hidden!r}")
        if type(self.target_sync) is not int or self.target_sync < 1:
            raise LayershareError(f"dlt.target_sync must be an integer >= 1, "
                                  f"got {self.target_sync!r}")
        for name in ("epsilon_start", "epsilon_decay", "epsilon_min", "gamma"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LayershareError(f"dlt.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.q_lr <= 0 or self.reward_clip <= 0:
            raise LayershareError("dlt.q_lr and dlt.reward_clip must be > 0")
        if self.reward not in REWARDS:
            raise LayershareError(f"unknown dlt.reward {self.reward!r}; choose one of "
                                  f"{', '.join(REWARDS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def help(cls) -> dict[str, str]:
        """``{field: help text}``, for a command line's ``--help-config``."""
        return {f.name: f.metadata["help"] for f in fields(cls)}
