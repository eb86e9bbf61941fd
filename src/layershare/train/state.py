"""Checkpoints of a run: ``OUT/checkpoints/{last,best}/``, each written atomically.

A checkpoint directory holds

* ``model/`` -- the model in the core format (``layershare.save``; a shared model is stored
  compactly and ``layershare.load`` rebuilds its structure);
* ``state.pt`` (``last`` only) -- optimizer state and every rank's RNG states, tensors and
  plain containers only, read back with ``torch.load(weights_only=True)``: nothing else is
  unpickled;
* ``info.json`` -- step, best validation figure, whether sharing was applied yet.

``atomic_directory`` builds it beside the old one and renames it into place, so a kill -9
at any moment leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from ..checkpoint import load, save
from ..errors import LayershareError, first_line
from ..outputs import atomic_directory, torch_save
from .distributed import Dist

CHECKPOINTS = "checkpoints"


def rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def checkpoint_dir(out: Path, tag: str) -> Path:
    return Path(out) / CHECKPOINTS / tag


def save_checkpoint(out: Path, tag: str, model, info: dict, d: Dist, optimizer=None,
                    extra: dict | None = None, sharded: Path | None = None) -> None:
    """Write ``checkpoints/TAG`` (collective under DDP: every rank calls it; rank 0 writes).

    With an ``optimizer`` (the ``last`` checkpoint) the optimizer and the RNG state of every
    rank are saved too, which is what makes a resumed run identical to an unbroken one;
    ``extra`` (tensors and plain containers, e.g. the DLT agent's state) goes beside them.
    ``sharded``: an FSDP run's model and optimizer shards, written by every rank to that
    directory (``train.fsdp.save_sharded``), moved in as ``sharded/``; ``state.pt`` then
    holds the RNG states and ``extra`` only (the optimizer state is in the shards).
    """
    rngs = [rng_state()]
    if optimizer is not None and d.active:
        rngs = [None] * d.world
        dist.all_gather_object(rngs, rng_state())
    if d.main:
        def write(tmp: Path):
            save(model, tmp / "model")
            if sharded is not None:
                Path(sharded).rename(tmp / "sharded")
            if optimizer is not None:
                opt = {} if sharded is not None else optimizer.state_dict()
                torch_save({"optimizer": opt, "rng": rngs, **(extra or {})}, tmp / "state.pt")
            (tmp / "info.json").write_text(json.dumps(info, indent=2) + "\n")

        atomic_directory(checkpoint_dir(out, tag), write)


def recover(out: Path) -> None:
    """Tidy ``checkpoints/`` after a kill during a checkpoint write.

    ``atomic_directory`` renames the old checkpoint to ``.TAG.old-PID`` before renaming the
    new one into place; a kill between the two renames leaves no ``TAG`` but a complete old
    one, which we put back. Half-written temporary directories are deleted.
    """
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return
    for tag in ("last", "best"):
        olds = sorted(root.glob(f".{tag}.old-*"))
        if not (root / tag).exists() and olds and (olds[-1] / "info.json").is_file():
            olds[-1].rename(root / tag)
    for leftover in root.glob(".*"):
        shutil.rmtree(leftover, ignore_errors=True)


def read_info(out: Path, tag: str = "last") -> dict | None:
    """``info.json`` of a complete checkpoint, or None when there is none."""
    path = checkpoint_dir(out, tag) / "info.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LayershareError(f"{path}: corrupted ({exc}); delete {path.parent} "
                              "to restart") from None
    expected = {"step": int, "history": list, "tokens": int, "train_time": (int, float),
                "best": (dict, type(None))} if tag == "last" else {"step": int}
    if not isinstance(info, dict) or any(not isinstance(info.get(k), t) or isinstance(
            info.get(k), bool) for k, t in expected.items()):
        raise LayershareError(f"{path}: not a checkpoint's info (needs "
                              f"{', '.join(expected)}); delete {path.parent} to restart")
    return info


def load_model(out: Path, tag: str):
    return load(checkpoint_dir(out, tag) / "model")


def load_training_state(out: Path, device, rank: int) -> dict:
    """The optimizer state dict (on ``device``), this rank's RNG state and the ``extra``
    entries saved with them (``extra``: a dict, empty when there were none)."""
    path = checkpoint_dir(out, "last") / "state.pt"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise LayershareError(f"{path}: cannot be read ({first_line(exc)}); delete "
                              f"{path.parent} to restart") from None
    rngs = state.get("rng") if isinstance(state, dict) else None
    cpu = torch.get_rng_state()  # a CPU generator's state is bytes of one fixed length
    if not (isinstance(state.get("optimizer") if rngs is not None else None, dict)
            and isinstance(rngs, list) and rngs
            and all(isinstance(r, dict) and isinstance(r.get("cpu"), torch.Tensor)
                    and r["cpu"].dtype == cpu.dtype and r["cpu"].shape == cpu.shape
                    for r in rngs)):
        raise LayershareError(f"{path}: not a training state (optimizer and RNG states); "
                              f"delete {path.parent} to restart")
    rng = rngs[rank] if rank < len(rngs) else rngs[0]
    rng = {k: v.cpu() for k, v in rng.items()}
    extra = {k: v for k, v in state.items() if k not in ("optimizer", "rng")}
    return {"optimizer": state["optimizer"], "rng": rng, "same_world": len(rngs) > rank,
            "extra": extra}
