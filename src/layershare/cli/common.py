"""Argument types that several verb groups use."""

from __future__ import annotations

import argparse

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
