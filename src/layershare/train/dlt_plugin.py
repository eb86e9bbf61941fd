"""Dynamic Layer Tying (Hay & Wolf, ICLR 2024) as a trainer plugin: ``share.method: dlt``.

The trainer builds the dense model and its AdamW as for any run; :class:`DLTPlugin` then puts
a :class:`~layershare.dlt.DLTController` on the model's layer stack with *that* optimizer, so
after every action the optimizer holds exactly the unique parameters (state freed on a tie,
fresh on an untie) and its ``param_groups`` dicts stay the same objects: the trainer's
learning-rate schedule, which writes ``group["lr"]`` every step, keeps working.

Why the model is marked as a ``tied`` layershare model from the start (:func:`attach`, kept
current by the controller after each action): every save of the run -- ``checkpoints/last``,
``checkpoints/best`` and ``OUT/model`` -- then stores each unique layer once, exactly as
:func:`layershare.dlt.save` would, ``layershare.count``/``inspect`` report the reduced size,
and a fresh run's model is the same kind of object as the model a resumed run loads from its
checkpoint (which carries those marks and must not be re-shared).

Resume: the controller's state (Q-network, its Adam, exploration RNG, walk position, pending
action) rides in ``state.pt`` next to the training optimizer; the tying itself is in the
checkpoint's model. ``dlt.jsonl`` is cut back to the actions rewarded before the checkpoint,
so an interrupted and resumed run writes the same log as an unbroken one.

Single process only: DDP and torch.compile capture the parameter set when they are built, and
tying changes it; so a DLT run under ``torchrun`` with more than one process is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..dlt import DLTController, TiedStack, attach, plot_heatmap
from ..errors import LayershareError
from .tasks import to_device

LOG, HEATMAP = "dlt.jsonl", "dlt.png"


def refuse_ddp(world: int | None = None) -> None:
    """A clear error before any process group is joined when DLT would run under DDP."""
    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    if world > 1:
        raise LayershareError(f"share.method=dlt runs in one process (DDP captures the "
                              f"parameter set that layer tying changes); WORLD_SIZE={world}: "
                              "run it without torchrun")


def cut_log(path: Path, pending: dict | None) -> None:
    """Keep the log lines of actions rewarded before the checkpoint: those applied before the
    checkpoint's pending action (later lines, and a ``reward: null`` line written by a
    finished run's ``close``, are written again by the resumed run)."""
    if not path.exists():
        return
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    limit = pending["step"] if pending is not None else float("inf")
    keep = [r for r in rows if r.get("reward") is not None and r["step"] < limit]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep))


class DLTPlugin:
    """The trainer's side of DLT: build/resume the controller, act after optimizer steps,
    checkpoint the agent, and write the log, heatmap and results at the end."""

    def __init__(self, trainer, resume: dict | None = None):
        self.trainer, self.out = trainer, trainer.out
        model = trainer.model
        if getattr(model, "layershare_config", None) is None:
            attach(model, TiedStack(model))  # a dense start: mark it (see module docstring)
        log = self.out / LOG
        if resume is not None:
            cut_log(log, resume["pending"])
        self.controller = DLTController(model, trainer.optimizer, trainer.cfg.dlt,
                                        log_path=log, resume=resume)
        self.valid_batches: list[dict] | None = None  # reward_source valid: built on first use

    def after_step(self, step: int, total: int) -> dict | None:
        """``on_step`` after optimizer step ``step``. Not after the last one: its new action
        would change the tying of the final model without a single step of training."""
        if step >= total:
            return None
        return self.controller.on_step(step, lambda: self.reward_loss(step))

    @torch.no_grad()
    def reward_loss(self, step: int) -> float:
        """The loss the reward is computed from, in eval mode (no dropout).

        ``reward_source: train``: the mean loss on the first micro-batch of the next step's
        training batch: a batch the model has not been trained on yet, a pure function of
        (seed, step) as every training batch, so a resumed run measures the same reward.
        ``valid``: the mean of the losses on the same ``reward_batches`` validation
        micro-batches (the first windows of the split) every time, so the difference between
        two rewards is the model's change, not the batches'. (Model selection also reads the
        validation split; the test split stays unseen.)"""
        t = self.trainer
        if t.cfg.dlt.reward_source == "valid":
            if self.valid_batches is None:
                n, size = t.cfg.dlt.reward_batches, t.micro
                total = t.task.size("valid")
                self.valid_batches = [t.task.batch("valid", [(b * size + j) % total
                                                             for j in range(size)])
                                      for b in range(n)]
            batches = self.valid_batches
        else:
            batches = [t.micro_batch(step, 0)]
        was_training = t.model.training
        t.model.eval()
        try:
            with t.autocast():
                losses = [float(t.task.loss(t.model, to_device(b, t.device), train=False))
                          for b in batches]
            return sum(losses) / len(losses)
        finally:
            t.model.train(was_training)

    def state_dict(self) -> dict:
        return self.controller.state_dict()

    def finish(self, results: dict, test_model) -> dict:
        """Close the log (the final pending action, reward null), draw the heatmap, and add
        the final tying to ``results``; ``dlt.test_model_roots`` is the tying of the model
        that was tested and saved as OUT/model (the best checkpoint's, which may be older)."""
        self.controller.close()
        plot_heatmap(self.out / LOG, self.out / HEATMAP)
        summary = self.controller.summary()
        summary["test_model_roots"] = TiedStack(test_model).roots()
        results.update(unique_layers=summary["unique_layers"], dlt_state=summary["state"],
                       dlt=summary)
        return results
