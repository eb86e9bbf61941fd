"""DDP through PyTorch's own engine: ``torchrun`` sets the environment, we read it.

``torchrun --nproc_per_node=N -m layershare train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; we join the process group (NCCL on CUDA, gloo on
CPU). Without those variables everything runs in one process and the helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init(device_kind: str) -> Dist:
    """Join the process group torchrun describes (once); ``Dist()`` outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return Dist(rank, world, local)


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def broadcast_flag(d: Dist, value: bool) -> bool:
    """Rank 0's boolean, on every rank (e.g. 'rank 0 hit an error, stop')."""
    if not d.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)  # picks the right device for NCCL or gloo
    return bool(box[0])


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()
