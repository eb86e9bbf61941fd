"""Shared fixtures for the data-recipe tests, and the ``network`` marker.

Unit tests here need no network and no npm/apt: they feed tiny synthetic files to the
parsers and a fake recipe to ``prepare``. Tests marked ``network`` really fetch from the
package registries and skip themselves when a client is missing or the fetch fails; run
``pytest -m "not network"`` to leave them out.
"""

from __future__ import annotations

import pytest

from layershare.data import recipes
from layershare.data.recipes import Recipe
from layershare.data.store import read_lines, write_lines


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "network: fetches real data from the package registries (npm, apt)")


class FakeBuild:
    """A recipe build that writes two tiny splits and counts how often it ran."""

    def __init__(self):
        self.calls = 0
        self.fail = False

    def __call__(self, out, work, progress):
        self.calls += 1
        assert work.is_dir() and not any(out.iterdir())
        write_lines(out / "train.txt", ["a b", "c d"])
        (out / "half-written").write_text("x")
        if self.fail:
            raise RuntimeError("simulated crash half way")
        (out / "half-written").unlink()
        write_lines(out / "test.txt", ["e f"])
        return {"source": {"fake": True}, "counts": {"train": {"lines": 2}, "test": {"lines": 1}}}


@pytest.fixture
def fake_recipe(monkeypatch):
    """Registers recipe ``fake`` (version 1) and returns its build for inspection."""
    build = FakeBuild()
    recipe = Recipe("fake", "lm", "test double", 1, build,
                    lambda d: {s: read_lines(d / f"{s}.txt") for s in ("train", "test")},
                    lambda d: read_lines(d / "train.txt"))
    monkeypatch.setitem(recipes.RECIPES, "fake", recipe)
    return build
