"""Helpers shared by the trainer tests (a module of its own: importing from conftest
breaks when several test folders each have one)."""

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file


def tiny(data: dict, name: str, **sections) -> list[str]:
    """``--set`` overrides for a tiny run on ``data`` (section dicts override the defaults)."""
    base = {"model": {"layers": 2, "d_model": 32, "heads": 2, "vocab_size": 300, "dropout": 0.0},
            "train": {"steps": 30, "batch_size": 8, "seq_len": 24, "lr": 3e-3, "warmup": 5,
                      "eval_every": 10, "save_every": 10, "log_every": 5, "eval_batches": 0}}
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    sets = [f"data.name={name}"] + [f"data.{s}={_flow(v)}" for s, v in data.items()]
    sets += [f"{section}.{k}={_flow(v)}" for section, kv in base.items() for k, v in kv.items()]
    return sets


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(Path(directory) / "model.safetensors")
