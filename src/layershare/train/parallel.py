"""One model on one or many processes: as it is, DDP or FSDP2 (``train.parallel``).

The trainer's loop is the same in every mode; what differs is asked of :class:`Parallel`:

* :meth:`~Parallel.wrap` -- the model as the loop calls it (``engine(batch) -> loss``) and
  its optimizer: one process uses the model itself; DDP wraps it
  (``DistributedDataParallel``, every rank a full replica); FSDP2 shards it in place
  (:func:`.fsdp.shard`: one unit per group of layers sharing tensors, then the root), after
  rank 0 kept a full copy, the *replica*, for evaluation and compact checkpoints;
* :meth:`~Parallel.micro_batch` -- gradients are synchronised on the last micro-batch of a
  step only (DDP ``no_sync``, FSDP ``set_requires_gradient_sync``);
* :meth:`~Parallel.plain` / :meth:`~Parallel.gather` -- the model as one process sees it:
  FSDP gathers the full weights into the replica (collective), the others are the model;
* :meth:`~Parallel.stage` / :meth:`~Parallel.load_optimizer` -- where a checkpoint keeps
  the optimizer state: ``state.pt`` (one process, DDP), or ``sharded/`` with the model's
  shards, written and read by every rank (FSDP, :mod:`.fsdp`).
"""

from __future__ import annotations

import copy
import gc
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import LayershareError, first_line
from . import fsdp
from .distributed import Dist
from .optim import make_optimizer


class LossModule(nn.Module):
    """``forward(batch) -> loss``, so DDP sees the forward call it needs to sync gradients."""

    def __init__(self, model: nn.Module, task):
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: dict):
        return self.task.loss(self.model, batch)


class Parallel:
    def __init__(self, d: Dist, device, sharded: bool, bf16: bool):
        """``sharded``: ``train.parallel: fsdp`` (FSDP2 under torchrun; one process runs
        the model as it is); ``bf16``: the run's autocast (FSDP's mixed precision policy)."""
        self.d, self.device, self.bf16 = d, device, bf16
        self.fsdp = sharded and d.active
        self.engine: nn.Module | None = None  # what the loop calls
        self.replica: nn.Module | None = None  # FSDP: rank 0's full copy

    def wrap(self, model: nn.Module, task, cfg):
        """Wrap (or shard) ``model`` for the loop; its optimizer, over the parameters that
        require grad. Every rank must hold the same weights (FSDP2, unlike DDP, does not
        broadcast rank 0's): the same seed, or the same checkpoint."""
        self.release()  # LightFormer re-wraps after the transfer
        if self.fsdp:
            self.replica = copy.deepcopy(model) if self.d.main else None
            fsdp.shard(model, bf16=self.bf16)
        optimizer = make_optimizer(model, cfg, self.device)
        self.engine = LossModule(model, task)
        if self.d.active and not self.fsdp:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.engine = DistributedDataParallel(self.engine, device_ids=ids)
        return optimizer

    def release(self) -> None:
        """Free the DDP wrapper now, on every rank at the same point of the program.

        Why: a DistributedDataParallel object sits in a reference cycle, so dropping it
        leaves it (its Reducer, its autograd hooks, its reference to the process group) to
        the cyclic garbage collector, which runs at a moment that differs between ranks --
        during a later backward pass, or at interpreter exit after the process group was
        destroyed while the other rank still talks to it. LightFormer's re-wrap after the
        transfer left one such object behind on every rank (test_two_processes_equal_one
        [lightformer]: rank 1 aborted, exit -6, once in three runs)."""
        if isinstance(self.engine, DistributedDataParallel):
            self.engine = None
            gc.collect()

    def micro_batch(self, model: nn.Module, last: bool):
        """The context of one micro-batch's forward and backward: gradients are reduced
        across the ranks on the step's ``last`` micro-batch only."""
        if self.fsdp:  # reduce-scatter on the last micro-batch only
            model.set_requires_gradient_sync(last)
            return nullcontext()
        if last or not self.d.active:
            return nullcontext()
        return self.engine.no_sync()

    def plain(self, model: nn.Module) -> nn.Module | None:
        """The model as one process sees it: FSDP's rank-0 replica (None on other ranks),
        else the model."""
        return self.replica if self.fsdp else model

    def gather(self, model: nn.Module) -> None:
        """FSDP: gather the full weights into rank 0's replica (collective: every rank)."""
        if self.fsdp:
            state = fsdp.full_state(model)
            if self.d.main:
                self.replica.load_state_dict(state)

    def stage(self, out: Path, step: int, model: nn.Module, optimizer) -> Path | None:
        """FSDP: every rank writes its model and AdamW shards into a staging directory that
        ``state.save_checkpoint`` moves into the checkpoint (collective); None otherwise."""
        return fsdp.stage_shards(out, step, model, optimizer, self.d) if self.fsdp else None

    def load_optimizer(self, last: Path, model: nn.Module, optimizer, state: dict) -> None:
        """The optimizer state of the checkpoint ``last``: from ``state.pt`` (``state``), or
        under FSDP the model and AdamW shards of ``sharded/``, each rank its own."""
        if self.fsdp:
            fsdp.load_sharded(last / fsdp.SHARDED, model, optimizer)
            return
        path = last / "state.pt"
        try:  # state.pt is the user's file: another model's, or damaged
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LayershareError(f"{path}: its optimizer state does not fit the model "
                                  f"({first_line(exc)}); delete {last} to restart") from None
        # load_state_dict compares the groups' sizes only: a moment of another shape would
        # fail in the first step, with a traceback
        for param, moments in optimizer.state.items():
            if any(isinstance(v, torch.Tensor) and v.dim() and v.shape != param.shape
                   for v in moments.values()):
                raise LayershareError(f"{path}: its optimizer state does not fit the model "
                                      f"(a moment of another shape than its parameter's "
                                      f"{tuple(param.shape)}); delete {last} to restart")
