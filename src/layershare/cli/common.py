"""Argument types that several verb groups use."""

from __future__ import annotations

import argparse
from pathlib import Path

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
