"""Device, precision, optimizer and sharing for a run: the choices the trainer makes once.

bf16 autocast on CUDA keeps fp32 master weights (no loss scaling needed, unlike fp16); on
CPU bf16 matmuls are slow on most chips, so ``precision: auto`` means fp32 there.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import torch
from torch import nn

from .. import convert
from ..errors import LayershareError
from .config import RunConfig


def pick_device(cfg: RunConfig) -> torch.device:
    want = cfg.train.device
    if want == "cuda" and not torch.cuda.is_available():
        raise LayershareError("train.device=cuda but torch sees no CUDA device")
    if want == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def autocast_for(cfg: RunConfig, device: torch.device):
    """bf16 autocast on CUDA (``precision: auto``), fp32 on CPU."""
    precision = cfg.train.precision
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return partial(torch.autocast, device.type, dtype=torch.bfloat16) if bf16 else nullcontext


def make_optimizer(model: nn.Module, cfg: RunConfig, device: torch.device):
    """AdamW with weight decay on matrices only (nanoGPT); fused kernels on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]  # each shared tensor once
    t = cfg.train
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2),
                                 fused=device.type == "cuda" or None)
    except ValueError as exc:  # torch's own argument checks, e.g. "Invalid beta parameter"
        raise LayershareError(f"train: {exc}") from None


def share(model: nn.Module, cfg: RunConfig) -> nn.Module:
    """Convert ``model`` with every ShareConfig key of the run's ``share:`` section."""
    return convert(model, config=cfg.share.share_config())
