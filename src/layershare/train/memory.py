"""Training memory the way Hay & Wolf (ICLR 2024) measure it, next to its closed form.

Three figures describe a run's memory, and they answer different questions:

* **static** -- what is allocated right after ``optimizer.step()``: weights, gradients and
  optimizer state, no activations (they were freed by the backward pass). This is the
  paper's metric: the official DLT code logs ``torch.cuda.memory_allocated()`` at the start
  of each episode, i.e. right after the previous ``optimizer.step()``. On CUDA it is
  ``torch.cuda.memory_allocated`` there (so it also counts whatever else the process keeps
  allocated, e.g. the current batch); on CPU (no allocator to ask) it is the bytes of the
  distinct storages of the model's parameters, their ``.grad`` and every optimizer-state
  tensor -- exactly the same three kinds of tensor, counted once each even when tied.
* **peak** -- the allocator's (CUDA) or the process's (CPU RSS) high-water mark over the
  run, activations included: what the run needs to fit in memory.
* **closed form** -- ``sum over unique trainable parameters of numel x element size x
  (2 + moments)`` (weight, gradient, ``moments`` optimizer tensors: 2 for Adam/AdamW) plus
  the bytes of frozen parameters: 16 bytes per unique fp32 parameter under AdamW. On CPU the
  static figure must equal it up to the optimizers' scalar ``step`` tensors; any gap shows a
  tensor the optimizer or model keeps that the count of unique parameters misses.
"""

from __future__ import annotations

import torch
from torch import nn


def _storages(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a shared storage counted once)."""
    seen: dict[tuple, int] = {}
    for t in tensors:
        if t is None or not torch.is_tensor(t) or t.device.type == "meta":
            continue
        if hasattr(t, "to_local"):  # an FSDP2 / tensor-parallel DTensor: this rank's shard
            t = t.to_local()
        s = t.untyped_storage()
        seen[(t.device.type, s.data_ptr())] = s.nbytes()
    return sum(seen.values())


def tensor_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Parameters + gradients + optimizer state, each storage once (CPU static memory)."""
    params = list(model.parameters())  # unique objects; tied slots share one object
    state = [] if optimizer is None else [v for st in optimizer.state.values()
                                          for v in st.values() if torch.is_tensor(v)]
    return _storages(params + [p.grad for p in params] + state)


def static_memory(model: nn.Module, optimizer: torch.optim.Optimizer | None,
                  device: torch.device) -> tuple[int, str]:
    """The paper's static memory, and what was measured; call right after ``step()``."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device)), "cuda_memory_allocated"
    return tensor_bytes(model, optimizer), "params+grads+optimizer_state_bytes"


def closed_form_bytes(model: nn.Module, moments: int = 2) -> int:
    """``numel x element size x (2 + moments)`` per unique trainable parameter, plus the
    bytes of frozen ones (weight only). Works on the meta device (no data needed)."""
    total = 0
    for p in model.parameters():  # each tied tensor once
        total += p.numel() * p.element_size() * ((2 + moments) if p.requires_grad else 1)
    return total
