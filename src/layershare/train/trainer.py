"""The training loop: one file, read top to bottom (nanoGPT's train.py, made resumable).

Per optimizer step: learning rate from the schedule (a function of the step), ``grad_accum``
micro-batches per rank (DDP and FSDP2 sync gradients on the last one only; how the model is
wrapped or sharded, and where its optimizer state is checkpointed: :mod:`.parallel`),
gradient clipping, AdamW. Every ``eval_every`` steps rank 0 measures the valid split and
keeps the best model; every ``save_every`` steps all ranks take part in writing the ``last``
checkpoint.

Determinism: the samples of step ``s`` depend only on (seed, s) and the global batch, the
optimizer and RNG states are checkpointed, and the learning rate is recomputed from ``s``;
so killing a run and re-running the same command gives the weights of an unbroken run.
Under DDP each rank takes a contiguous slice of the step's global batch; the mean of the
ranks' mean losses equals the single-process mean when every micro-batch has the same
number of target tokens (always for LM windows; for padded batches it is a weighting
difference, as in fairseq's and most trainers' default).

Sharing: ``share.transfer_at_step = 0`` converts the freshly initialised model before the
first step (ResidualTransformer, ALBERT, low-rank from scratch). ``N > 0`` trains the dense
model for N steps, then converts the *trained* weights -- for ``lowrank`` the SVD weight
transfer of LightFormer -- builds a new optimizer and fine-tunes; the best checkpoint is
then chosen among the converted model's evaluations only. ``share.method: dlt`` (dynamic
layer tying) is a plugin, :mod:`.dlt_plugin`: it acts after optimizer steps and its agent's
state rides in the ``last`` checkpoint.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .. import count, save
from ..errors import LayershareError
from ..outputs import check_out, lock_directory
from . import distributed, rundir
from .config import RunConfig
from .datasets import TOKENIZER, build_task
from .dlt_plugin import DLTPlugin, refuse_ddp
from .init_from import load_dense_weights, same_tokenizer
from .memory import static_memory
from .optim import autocast_for, pick_device, share
from .parallel import Parallel
from .report import FinalWindow, MetricsLog, plot_losses, summary_line, write_results
from .run_figures import run_figures, test_figures
from .schedule import lr_at
from .state import (
    load_model,
    load_training_state,
    read_info,
    save_checkpoint,
    set_rng_state,
)
from .tasks import Order, to_device

CONFIG = rundir.CONFIG


class Trainer:
    def __init__(self, cfg: RunConfig, out, progress: bool = True, overwrite: bool = False):
        self.cfg, self.out, self.progress, self.overwrite = cfg, out, progress, overwrite
        self.exits = ExitStack()  # rank 0's lock on OUT, held until the run ends
        self.fresh_entries: set[str] | None = None  # what a fresh start found in OUT
        self.created = False  # OUT did not exist before this run
        self.device = pick_device(cfg)
        if cfg.share.method == "dlt":
            refuse_ddp()  # before joining a process group
        self.d = distributed.init(self.device.type)
        self.dlt: DLTPlugin | None = None
        self.window: FinalWindow | None = None
        if self.d.active and self.device.type == "cuda":
            self.device = torch.device("cuda", self.d.local_rank)
        self.autocast = autocast_for(cfg, self.device)
        # one process, DDP or FSDP2: the engine the loop calls, the optimizer's home
        self.parallel = Parallel(self.d, self.device, cfg.train.parallel == "fsdp",
                                 bf16=self.autocast is not nullcontext)

    def say(self, text: str) -> None:
        if self.d.main and self.progress:
            tqdm.write(text)

    # -- setup ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Rank 0 checks and locks OUT and prepares data and tokenizer (others wait, then
        read what it wrote). Nothing is written before the config and OUT are checked."""
        t = self.cfg.train
        if t.batch_size % (self.d.world * t.grad_accum):
            raise LayershareError(f"train.batch_size ({t.batch_size}) must be divisible by "
                                  f"processes x grad_accum ({self.d.world} x {t.grad_accum})")
        self.micro = t.batch_size // (self.d.world * t.grad_accum)
        error = None
        if self.d.main:
            try:
                self.out = check_out(self.out, "run", overwrite=self.overwrite,
                                     sources=rundir.data_paths(self.cfg) if self.overwrite else ())
                self.created = not self.out.exists()
                self.exits.enter_context(lock_directory(self.out))
                self.info = self._check_out()
                self.task = self.make_task(setup=True)
            except LayershareError as exc:
                error = exc
        self.out = Path(self.out)
        if distributed.broadcast_flag(self.d, error is not None):
            raise error or LayershareError("rank 0 could not set up the run (see its error)")
        if not self.d.main:
            self.info = read_info(self.out)
            self.task = self.make_task(setup=False)
        self.order = Order(self.task.size("train"), self.cfg.train.seed)

    def make_task(self, setup: bool):
        """The run's task (a subclass may build another kind, e.g. distillation)."""
        return build_task(self.cfg, self.out, self.progress and setup, setup=setup)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Hook on the fresh or resumed model before its optimizer is built (a subclass
        freezes parameters here: the optimizer holds only those that require grad)."""
        return model

    def _check_out(self) -> dict | None:
        info, self.fresh_entries = rundir.prepare(self.out, self.cfg, self.overwrite)
        return info

    def write_config(self) -> None:
        if self.d.main:
            rundir.write_config(self.out, self.cfg)

    def discard_fresh(self) -> None:
        if self.d.main and isinstance(self.out, Path):
            rundir.discard_fresh(self.out, self.fresh_entries, self.created)

    def build(self) -> None:
        """Model + optimizer, fresh or from ``checkpoints/last``."""
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.train.seed)
        if info is None:
            model = self.task.build_model()
            if cfg.model.init_from:
                load_dense_weights(model, cfg.model.init_from)
                same_tokenizer(Path(cfg.model.init_from).expanduser(), self.out)
            if cfg.share.method not in ("dense", "dlt") and cfg.share.transfer_at_step == 0:
                share(model, cfg)
            self.step, self.best, self.history = 0, None, []
            self.tokens, self.train_time = 0, 0.0
        else:
            model = load_model(self.out, "last")
            self.step, self.best, self.history = info["step"], info["best"], info["history"]
            self.tokens, self.train_time = info["tokens"], info["train_time"]
            self.say(f"resuming from step {self.step} ({self.out / 'checkpoints' / 'last'})")
        self.model = self.prepare_model(model).to(self.device).train()
        self.optimizer = self.parallel.wrap(self.model, self.task, self.cfg)
        extra = {}
        if info is None:
            torch.manual_seed(cfg.train.seed + 1 + self.d.rank)  # dropout differs per rank
        else:
            state = load_training_state(self.out, self.device, self.d.rank)
            self.parallel.load_optimizer(self.out / "checkpoints" / "last", self.model,
                                         self.optimizer, state)
            set_rng_state(state["rng"])
            extra = state["extra"]
        if cfg.share.method == "dlt":
            self.dlt = DLTPlugin(self, resume=extra.get("dlt"))

    @property
    def converted(self) -> bool:
        return getattr(self.model, "layershare_config", None) is not None

    def transfer(self, log: MetricsLog) -> None:
        """Convert the trained dense model (LightFormer's SVD transfer for lowrank)."""
        before = count(self.model).unique_params
        share(self.model, self.cfg)
        self.model.to(self.device)
        self.optimizer = self.parallel.wrap(self.model, self.task, self.cfg)
        self.best, after = None, count(self.model).unique_params
        log.log(self.step, "transfer", params_before=before, params_after=after)
        self.say(f"step {self.step}: converted to {self.cfg.share.method} sharing "
                 f"({before:,} -> {after:,} parameters); fine-tuning")

    # -- the loop ------------------------------------------------------------------------
    def micro_batch(self, step: int, m: int) -> dict:
        """Rank r's micro-batch m of ``step``: a contiguous slice of the step's global batch."""
        t = self.cfg.train
        start = step * t.batch_size + (self.d.rank * t.grad_accum + m) * self.micro
        return self.task.batch("train", [self.order(start + j) for j in range(self.micro)])

    def train_step(self) -> tuple[float, int]:
        t = self.cfg.train
        lr = lr_at(self.step, t.lr, t.warmup, t.steps, t.schedule, t.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total, tokens = 0.0, 0
        for m in range(t.grad_accum):
            batch = to_device(self.micro_batch(self.step, m), self.device)
            with self.parallel.micro_batch(self.model, last=m == t.grad_accum - 1):
                with self.autocast():
                    loss = self.parallel.engine(batch) / t.grad_accum
                loss.backward()
            total += float(loss.detach())
            tokens += batch["tokens"]
        # the global gradient norm before clipping (logged: it shows a gradient-scale error,
        # which AdamW's update and clipping would hide); max_norm=inf measures, clips nothing
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              t.grad_clip if t.grad_clip > 0 else math.inf)
        self.grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        self.optimizer.step()
        if self.step + 1 == t.steps:  # the paper's static memory, right after step()
            self.static_mem = static_memory(self.model, self.optimizer, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        return total, tokens * self.d.world

    @property
    def plain(self) -> nn.Module:
        """The model as one process sees it: FSDP's rank-0 replica, else the model."""
        return self.parallel.plain(self.model)

    def evaluate(self, log: MetricsLog) -> None:
        """Rank 0: valid figures; a better one becomes ``checkpoints/best``."""
        if not self.d.main:
            return
        metric, direction = self.task.best_metric
        fig = self.task.evaluate(self.plain, "valid", self.device, self.autocast,
                                 self.cfg.train.eval_batches)
        fig = {k: v for k, v in fig.items() if k != "targets" and isinstance(v, (int, float))}
        value = fig[metric]
        log.log(self.step, "valid", **fig)
        self.history.append([self.step, value])
        better = self.best is None or (value > self.best["value"] if direction == "max"
                                       else value < self.best["value"])
        if better:
            self.best = {"step": self.step, "value": value, "metric": metric}
            save_checkpoint(self.out, "best", self.plain, self.best, self.d)
        self.say(f"step {self.step}: valid " + ", ".join(f"{k} {v:.4g}" for k, v in fig.items()))

    def checkpoint(self) -> None:
        info = {"step": self.step, "best": self.best, "history": self.history,
                "tokens": self.tokens, "train_time": self.train_time, "converted": self.converted}
        extra = {"dlt": self.dlt.state_dict()} if self.dlt is not None else None
        # FSDP: every rank writes its shards, rank 0 moves them into the checkpoint
        stage = self.parallel.stage(self.out, self.step, self.model, self.optimizer)
        save_checkpoint(self.out, "last", self.plain, info, self.d, self.optimizer, extra,
                        sharded=stage)

    def fit(self) -> None:
        t, s = self.cfg.train, self.cfg.share
        log = MetricsLog(self.out, self.step, enabled=self.d.main)
        if self.step >= t.steps:
            self.say(f"already trained to step {self.step}; evaluating")
        bar = tqdm(total=t.steps, initial=self.step, disable=not (self.progress and self.d.main),
                   dynamic_ncols=True, desc=self.out.name)
        self.window = window = FinalWindow(t.steps, self.device)
        window.after_step(self.step, self.tokens, self.train_time)
        try:
            self.before_loop(log)
            while self.step < t.steps:
                if s.transfer_at_step and self.step == s.transfer_at_step and not self.converted:
                    self.transfer(log)
                start = time.perf_counter()
                loss, tokens = self.train_step()
                if not math.isfinite(loss):
                    raise LayershareError(f"loss is {loss} at step {self.step}; lower train.lr")
                self.step += 1
                if self.dlt is not None:
                    self.dlt.after_step(self.step, t.steps)
                if self.device.type == "cuda" and (self.step % t.log_every == 0
                                                   or self.step in (window.start, window.end)):
                    torch.cuda.synchronize()
                self.train_time += time.perf_counter() - start
                self.tokens += tokens
                window.after_step(self.step, self.tokens, self.train_time)
                speed = self.tokens / max(self.train_time, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}")
                if self.step % t.log_every == 0 or self.step == t.steps:
                    log.log(self.step, "train", loss=loss, lr=self.optimizer.param_groups[0]["lr"],
                            grad_norm=self.grad_norm, tokens_per_s=speed)
                if self.step % t.eval_every == 0 or self.step % t.save_every == 0 \
                        or self.step == t.steps:
                    self.parallel.gather(self.model)  # FSDP: rank 0's replica
                if self.step % t.eval_every == 0 or self.step == t.steps:
                    self.evaluate(log)
                if self.step % t.save_every == 0 or self.step == t.steps:
                    self.checkpoint()
        finally:
            bar.close()
            log.close()

    def before_loop(self, log: MetricsLog) -> None:
        """Hook before the first step of this process (a subclass may evaluate at step 0)."""

    # -- the end -------------------------------------------------------------------------
    def finish(self) -> dict:
        """Rank 0: the best model (else the last) measured, saved as ``OUT/model``, results.json,
        the plot. One sequence for every run; a subclass (distillation) changes what is
        measured (:meth:`measure`), how the model is saved (:meth:`save_model`) and the
        summary line (:meth:`summary`), not the sequence."""
        if not self.d.main:
            return {}
        model = self.plain
        if read_info(self.out, "best") is not None:
            model = load_model(self.out, "best").to(self.device)
        figures = self.measure(model)
        self.save_model(model)
        results = {**run_figures(self, model), **figures}
        write_results(self.out, results)
        plot_losses(self.out)
        self.say(self.summary(results))
        return results

    def measure(self, model) -> dict:
        """The task's test figures and the training run's own (memory, DLT): run_figures.py."""
        return test_figures(self, model)

    def save_model(self, model) -> None:
        save(model, self.out / "model", extra_files={TOKENIZER: self.out / TOKENIZER})

    def summary(self, results: dict) -> str:
        return summary_line(results)


def train(cfg: RunConfig, out, progress: bool = True, overwrite: bool = False,
          trainer_class: type[Trainer] = Trainer) -> dict:
    """Train (or resume) ``cfg`` into ``out``; returns results (empty on ranks other than 0).

    ``out`` follows :mod:`layershare.outputs`: a new or empty directory, or an earlier run
    (resumed when the config matches); ``overwrite`` discards what is there and starts
    afresh. Rank 0 holds an exclusive lock on ``out`` until the run ends. ``trainer_class``:
    a subclass with its own task and last act (train/distill_run.py).
    """
    trainer = trainer_class(cfg, out, progress, overwrite)
    try:
        try:
            trainer.setup()
            trainer.build()
        except BaseException:
            trainer.discard_fresh()
            raise
        trainer.write_config()
        trainer.fit()
        results = trainer.finish()
        distributed.barrier(trainer.d)  # no rank leaves while rank 0 still writes
        return results
    finally:
        trainer.exits.close()
        trainer.parallel.release()  # DDP's wrapper, before the process group goes
        distributed.shutdown(trainer.d)
