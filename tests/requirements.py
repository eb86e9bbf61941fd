"""Skips that CI turns into failures.

A test that needs something this machine may lack (espeak-ng, an optional package, the real
Whisper weights, apt's lists, the network) asks for it with ``need``. Normally a missing
thing skips the test with the reason; where the ``LAYERSHARE_REQUIRE`` environment variable
names it (a comma-separated list, or ``all``), it fails the test instead, so CI cannot pass
while silently running less than it claims. ``.ci/run`` sets ``LAYERSHARE_REQUIRE=all``.
Skips that depend on privileges (mounting a tmpfs) are not routed here: ``pytest -rs``
still lists them.
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest


def required(what: str) -> bool:
    """Whether ``LAYERSHARE_REQUIRE`` turns a missing ``what`` into a failure."""
    names = {n.strip() for n in os.environ.get("LAYERSHARE_REQUIRE", "").split(",")}
    return "all" in names or what in names


def need(what: str, present: bool, reason: str) -> None:
    """Skip (or, where required, fail) unless ``present``; in a test or at module level (a
    whole file that needs ``what``)."""
    if present:
        return
    if required(what):
        pytest.fail(f"{reason} (LAYERSHARE_REQUIRE={os.environ['LAYERSHARE_REQUIRE']} "
                    f"requires {what})", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def need_module(name: str, extra: str):
    """The imported module ``name``, which ``pip install 'layershare[extra]'`` provides."""
    try:
        return importlib.import_module(name)
    except ImportError:
        need(extra, False, f"{name} is missing: pip install 'layershare[{extra}]'")


def need_tool(tool: str, install: str = "") -> None:
    """A command on PATH (``install`` says how to get it)."""
    need(tool, shutil.which(tool) is not None,
         f"{tool} is not installed" + (f": {install}" if install else ""))


ESPEAK = "apt-get install espeak-ng (.ci/run does)"
