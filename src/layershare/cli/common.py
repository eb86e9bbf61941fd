"""Argument types that several verb groups use."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..arch import KINDS
from ..config import INITS, STACKS
from ..errors import LayershareError
from ..plan import STRATEGIES


def strategy_arg(text: str):
    """A strategy name or an explicit comma-separated list of group ids."""
    if text in STRATEGIES:
        return text
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a strategy ({', '.join(STRATEGIES)}) nor a list of group ids "
            "like 0,0,1,1") from None


def out_arg(text: str) -> Path:
    """An output path; ``--out ""`` is refused here (``Path("")`` would mean ``.``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty: give the path of a directory")
    return Path(text)


def add_overwrite(p) -> None:
    """``--overwrite``: replace an earlier layershare output of another kind (a directory
    layershare did not write is never replaced; see layershare.outputs)."""
    p.add_argument("--overwrite", action="store_true",
                   help="replace a layershare output of another kind in --out")



def add_share_options(p) -> None:
    """--strategy, --init, --diag, --matrices, --stacks: the ShareConfig choices of convert and
    compress."""
    p.add_argument("--strategy", type=strategy_arg, default="sequence",
                   help=f"{' | '.join(STRATEGIES)} or explicit group ids, e.g. 0,0,1,1")
    p.add_argument("--init", choices=[i for i in INITS if i != "scratch"], default="mean")
    p.add_argument("--diag", action=argparse.BooleanOptionalAction, default=None,
                   help="per-layer diagonal (default: on for residual, off for lowrank)")
    p.add_argument("--matrices", default=",".join(KINDS),
                   help=f"comma-separated subset of {','.join(KINDS)}")
    p.add_argument("--stacks", choices=STACKS, default="all",
                   help="stacks of an encoder-decoder model to share (default all); --keep "
                        "counts the chosen stacks only")

def run_dir(directory: Path):
    """(config, model, task, device, autocast) of a finished run directory."""
    from .. import load
    from ..train.config import read_run_config
    from ..train.datasets import build_task
    from ..train.trainer import autocast_for, pick_device

    config_path, model_dir = directory / "config.yaml", directory / "model"
    if not config_path.is_file() or not model_dir.is_dir():
        raise LayershareError(f"{directory}: not a finished run (needs config.yaml and model/)")
    cfg = read_run_config(config_path)
    device = pick_device(cfg)
    model = load(model_dir).to(device).eval()
    return cfg, model, device, autocast_for(cfg, device), build_task


def load_model(src: str | Path):
    """(model, tokenizer, kind) of a layershare checkpoint, a transformers directory, a .gguf
    file or a short name; kind is "layershare" or "transformers"."""
    from ..checkpoint import META, load
    from ..formats.hub import auto_tokenizer, from_local
    from ..formats.pretrained import resolve

    path = resolve(src)
    if path.is_dir() and (path / META).is_file():
        return load(path), auto_tokenizer(path), "layershare"
    return from_local(src), auto_tokenizer(src), "transformers"


def save_with_tokenizer(model, src, out: Path, overwrite: bool, dtype: str | None = None) -> None:
    """``layershare.save`` with ``src``'s tokenizer beside the weights (a GGUF file's
    tokenizer, which lives inside the weights file, written out as tokenizer.json)."""
    import tempfile

    from .. import save
    from ..formats.hub import save_tokenizer

    with tempfile.TemporaryDirectory() as tok_dir:
        save_tokenizer(src, Path(tok_dir))
        save(model, out, extra_files={f.name: f for f in Path(tok_dir).iterdir()},
             overwrite=overwrite, dtype=dtype)
