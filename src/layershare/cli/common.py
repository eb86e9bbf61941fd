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

def run_dir(directory: Path, read_data: bool = False, trust_config: bool = False):
    """(config, model, device, autocast, build_task) of a finished run directory; its config
    confined to it (train/config.py, ``confine_to_run``; ``read_data`` when its data will be
    read): a run directory may come from anyone, and nothing it holds may lead layershare
    outside it -- unless the user vouches for it (``trust_config``: ``eval --trust-config``,
    the benchmarks' own runs), when its data files are read where its config says."""
    from .. import load
    from ..paths import file_inside
    from ..train.config import confine_to_run, read_run_config
    from ..train.datasets import build_task
    from ..train.trainer import autocast_for, pick_device

    directory = Path(directory)
    model_dir = directory / "model"
    if not (directory / "config.yaml").is_file() or not model_dir.is_dir():
        raise LayershareError(f"{directory}: not a finished run (needs config.yaml and model/)")
    base = directory.resolve()
    if base not in model_dir.resolve().parents:
        raise LayershareError(f"{model_dir} leads outside the run directory; refused")
    cfg = read_run_config(file_inside(directory, "config.yaml", "run config"))
    if not trust_config:
        cfg = confine_to_run(cfg, directory, read_data)
    device = pick_device(cfg)
    model = load(model_dir).to(device).eval()
    return cfg, model, device, autocast_for(cfg, device), build_task


def run_tokenizer(directory: Path):
    """The tokenizer a run trained with: ``model/tokenizer.json`` (what ``layershare.save``
    put beside the weights), else the run's ``tokenizer.json``; each a regular file inside
    its directory."""
    from ..data import load_tokenizer
    from ..paths import file_inside

    directory = Path(directory)
    inner = directory / "model" / "tokenizer.json"
    if inner.exists() or inner.is_symlink():
        return load_tokenizer(file_inside(directory / "model", "tokenizer.json", "tokenizer"))
    return load_tokenizer(file_inside(directory, "tokenizer.json", "tokenizer"))


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
