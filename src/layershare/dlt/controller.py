"""DLTController: the training-loop side of Dynamic Layer Tying (Hay & Wolf, ICLR 2024).

The loop builds the model and its optimizer as usual, then::

    dlt = DLTController(model, optimizer, DLTConfig(), log_path=out / "dlt.jsonl")
    for step in range(1, steps + 1):
        ...forward, backward, optimizer.step(), optimizer.zero_grad()...
        dlt.on_step(step, lambda: batch_loss(model, next_train_batch()))   # no_grad mean loss
    dlt.close()
    plot_heatmap(out / "dlt.jsonl", out / "dlt.png")
    dlt.save(out / "final")            # layershare checkpoint, unique layers only

Timeline (the official code's): the constructor takes the first action (layer 1, episode 0)
before any training step. Every ``steps_per_action`` optimizer steps, :meth:`on_step`

1. measures the reward of the pending action ``a`` of layer ``l`` on the loss the loop
   passes (one training batch, or the fixed validation batches: ``reward_source``;
   ``paper``: ``clip(-exp(loss))``; ``neg-log-ppl``: ``clip(-loss)``, see DLTConfig); with
   ``reward_baseline: ema`` the update uses ``r - b``, ``b`` the moving average of earlier
   rewards (:class:`Baseline`);
2. makes the TD update on ``(s, l, a, r, s', l')``, ``s'`` = the state after ``a``,
   ``l'`` = the next layer of the walk 1..L-1 (a new episode, with decayed epsilon, after
   layer L-1). With ``shuffle_rewards`` (a control) the episode's transitions wait until
   its end, their rewards are permuted among them, then updated in order;
3. lets ``l'`` choose its action epsilon-greedily, applies it to the model (tie: share the
   source's tensors; untie: a real copy) and syncs the optimizer (state freed for dropped
   tensors, fresh for copies);
4. writes one JSON line for the rewarded action: ``episode``, ``step`` (the optimizer step
   after which the action was applied; 0 = before training), ``layer``, ``action``, ``state``
   (the whole vector after the action), ``reward``, ``epsilon`` (plus ``loss``, ``explored``,
   ``unique_layers``, ``td_loss``, ``q``, ``target``). :meth:`close` writes the still pending
   action with ``reward: null``, so the log always ends with the final state.

With ``start: official`` the constructor first ties every layer to layer 0 (the official
code's initial state ``[0, ..., 0]``). ``stack``: any object with TiedStack's ``state``,
``num_layers``, ``apply``, ``roots``, ``unique_layers`` and ``layer_params`` (the model-free
environment of :mod:`.synthetic` passes its own; ``model`` and ``optimizer`` are None then).

Not for models wrapped in DistributedDataParallel or torch.compile: both capture the
parameter set when they are built, and tying changes it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import LayershareError
from .agent import Agent, epsilon_at, next_layer
from .config import DLTConfig
from .optim import SyncReport, sync_optimizer
from .tying import TiedStack, roots, save

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


class Baseline:
    """Exponential moving average of the rewards: ``centre(r)`` returns ``r - b`` and then
    updates ``b <- decay * b + (1 - decay) * r``; ``b`` starts at the first reward (whose
    centred value is 0). Subtracting a baseline that does not depend on the action leaves
    the expected ranking of actions unchanged and removes the trend of a training run."""

    def __init__(self, decay: float, value: float | None = None):
        self.decay, self.value = decay, value

    def centre(self, reward: float) -> float:
        if self.value is None:
            self.value = reward
        centred = reward - self.value
        self.value = self.decay * self.value + (1 - self.decay) * reward
        return centred


def reward_from_loss(loss: float, config: DLTConfig) -> float:
    """``paper``: ``clip(-perplexity)`` with ``perplexity = exp(loss)``; ``neg-log-ppl``:
    ``clip(-loss)``. Both clipped to ``[-reward_clip, reward_clip]``."""
    c = config.reward_clip
    if not math.isfinite(loss):
        return -c
    value = -math.exp(min(loss, 80.0)) if config.reward == "paper" else -loss
    return max(-c, min(c, value))


class DLTController:
    """Ties and unties the layers of ``model`` as a Q-learning agent decides, during training.

    ``optimizer``: the training optimizer, kept in sync in place; or a factory
    ``model -> optimizer`` (the built one is :attr:`optimizer`); or None when the loop builds
    it later (call :meth:`sync` with it then). ``group_of(name, param) -> group index`` places
    parameters in its groups (default: a copy joins its source's group). ``stack_path``: the
    layer stack to tie (default: the architecture's only stack). ``resume``: a
    :meth:`state_dict` to continue from (the model must already carry its tying, e.g. from
    ``layershare.load`` of :meth:`save`'s checkpoint); the log is then appended to.
    """

    def __init__(self, model: nn.Module,
                 optimizer: torch.optim.Optimizer | OptimizerFactory | None,
                 config: DLTConfig | None = None, stack_path: str | None = None,
                 log_path: str | os.PathLike | None = None,
                 group_of: Callable[[str, nn.Parameter], int | None] | None = None,
                 resume: dict | None = None, stack=None):
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            optimizer = optimizer(model)  # a factory, e.g. the trainer's make_optimizer
        self.model, self.optimizer, self.group_of = model, optimizer, group_of
        self.config = config or DLTConfig()
        self.tied = stack if stack is not None else TiedStack(model, stack_path, self.config.tie)
        self.agent = Agent(self.tied.num_layers, self.config)
        self.episode, self.layer, self.actions = 0, 1, 0
        self.baseline = Baseline(self.config.baseline_decay)
        self.waiting: list[dict] = []  # shuffle_rewards: this episode's transitions
        self.log_path = None if log_path is None else Path(log_path)
        self.pending: dict | None = None
        self.last: dict | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if resume is None:
                self.log_path.write_text("")
        if resume is None:
            if self.config.start == "official":
                origins = self.tied.apply([0] * self.tied.num_layers)
                if self.optimizer is not None:
                    sync_optimizer(self.optimizer, self.model, origins, self.group_of)
            self._act(step=0)
        else:
            self._resume(resume)

    @property
    def epsilon(self) -> float:
        return epsilon_at(self.config, self.episode)

    @property
    def state(self) -> list[int]:
        return list(self.tied.state)

    def _act(self, step: int) -> None:
        """The current layer chooses, the model and optimizer follow; the action is pending
        until its reward is measured."""
        before = self.state
        action, explored = self.agent.act(before, self.layer, self.epsilon)
        after = before.copy()
        after[self.layer] = action
        origins = self.tied.apply(after)
        if self.optimizer is not None:
            sync_optimizer(self.optimizer, self.model, origins, self.group_of)
        self.pending = {"episode": self.episode, "step": step, "layer": self.layer,
                        "action": action, "state": after, "before": before,
                        "epsilon": self.epsilon, "explored": explored}
        self.actions += 1

    def sync(self, optimizer: torch.optim.Optimizer) -> SyncReport:
        """Adopt ``optimizer`` (built after the controller) and fit it to the model."""
        self.optimizer = optimizer
        return sync_optimizer(optimizer, self.model, None, self.group_of)

    def on_step(self, step: int,
                train_batch_loss_fn: Callable[[], float | torch.Tensor]) -> dict | None:
        """Call after every optimizer step (``step`` = steps done, from 1). Every
        ``steps_per_action`` steps: reward, TD update, next action; returns the logged
        record then, None otherwise. ``train_batch_loss_fn()``: the mean token loss of the
        model on one training batch (called under ``torch.no_grad``)."""
        if step % self.config.steps_per_action:
            return None
        with torch.no_grad():
            loss = float(train_batch_loss_fn())
        reward = reward_from_loss(loss, self.config)
        p = self.pending
        if p is None:
            raise LayershareError("DLTController.on_step after close()")
        following = next_layer(self.layer, self.tied.num_layers)
        wraps = following <= self.layer  # the walk wrapped (L = 2: every action is an episode)
        used = self.baseline.centre(reward) if self.config.reward_baseline == "ema" else reward
        move = (p["before"], p["layer"], p["action"], used, p["state"], following)
        if self.config.shuffle_rewards:
            td = self._shuffled(move, flush=wraps)
        else:
            td = self.agent.update(*move)
        record = self._record(p, reward=reward, loss=loss, reward_used=used, **td)
        if wraps:
            self.episode += 1
        self.layer = following
        self._act(step)
        return record

    def _shuffled(self, move: tuple, flush: bool) -> dict:
        """shuffle_rewards: keep ``move``; at the episode's end permute the rewards among its
        transitions (the agent's RNG) and make their TD updates; returns the last update's
        figures (None until then)."""
        self.waiting.append(list(move))
        if not flush:
            return {"td_loss": None, "q": None, "target": None}
        rewards = [m[3] for m in self.waiting]
        self.agent.rng.shuffle(rewards)
        for m, r in zip(self.waiting, rewards):
            td = self.agent.update(m[0], m[1], m[2], r, m[4], m[5])
        self.waiting = []
        return td

    def _record(self, p: dict, **extra) -> dict:
        record = {k: v for k, v in p.items() if k != "before"}
        record.update(extra, unique_layers=len(set(roots(p["state"]))))
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        self.last = record
        return record

    def close(self) -> None:
        """Log the pending action (its reward never came: ``null``)."""
        if self.pending is not None:
            self._record(self.pending, reward=None)
            self.pending = None

    def summary(self) -> dict:
        """Where the agent stands: episode, epsilon, state, unique layers and parameters."""
        unique = self.tied.unique_layers()
        return {"episode": self.episode, "layer": self.layer, "actions": self.actions,
                "epsilon": self.epsilon, "state": self.state, "roots": self.tied.roots(),
                "num_layers": self.tied.num_layers, "unique_layers": unique,
                "unique_layer_params": unique * self.tied.layer_params(),
                "dense_layer_params": self.tied.num_layers * self.tied.layer_params(),
                "last_reward": None if self.last is None else self.last["reward"]}

    def save(self, directory: str | os.PathLike, extra_files=None) -> Path:
        """A layershare checkpoint of the model as tied now (unique layers stored once)."""
        return save(self.model, directory, self.tied, extra_files)

    def state_dict(self) -> dict:
        """Everything to resume the agent (the model's tying is in the model checkpoint)."""
        return {"agent": self.agent.state_dict(), "episode": self.episode, "layer": self.layer,
                "actions": self.actions, "state": self.state, "pending": self.pending,
                "baseline": self.baseline.value, "waiting": self.waiting}

    def _resume(self, sd: dict) -> None:
        if roots(sd["state"]) != self.tied.roots():
            raise LayershareError(f"the model is tied as {self.tied.roots()}, the agent's state "
                                  f"{sd['state']} needs {roots(sd['state'])}: load the model "
                                  "checkpoint saved with this agent state")
        self.agent.load_state_dict(sd["agent"])
        self.episode, self.layer, self.actions = sd["episode"], sd["layer"], sd["actions"]
        self.baseline.value, self.waiting = sd.get("baseline"), sd.get("waiting", [])
        self.tied.apply(sd["state"])  # same roots: no tensor changes, only the vector
        if self.optimizer is not None:
            sync_optimizer(self.optimizer, self.model, None, self.group_of)
        self.pending = sd["pending"]
