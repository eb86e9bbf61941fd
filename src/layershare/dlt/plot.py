"""Heatmap of who is tied to whom over training, from the controller's JSONL log.

Rows are layers, columns episodes; cell ``(i, e)`` is ``s_i`` at the end of episode ``e``
(the state after the episode's last logged action): the layer that layer ``i`` is tied to, or
``i`` itself when it trains independently (marked with a dot). This is the figure of Hay &
Wolf (ICLR 2024) that shows which layers the agent keeps unique.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import LayershareError


def read_log(jsonl_path: str | os.PathLike) -> list[dict]:
    """The records of a DLT log, in order."""
    lines = Path(jsonl_path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def episode_states(records: list[dict]) -> np.ndarray:
    """(layers, episodes) array of ``s_i`` at the end of each episode (a episode missing
    from the log repeats the previous column)."""
    if not records:
        raise LayershareError("the DLT log has no actions to plot")
    last: dict[int, list[int]] = {}
    for r in records:
        last[r["episode"]] = r["state"]
    first = min(last)
    columns, current = [], last[first]
    for e in range(first, max(last) + 1):
        current = last.get(e, current)
        columns.append(current)
    return np.array(columns, dtype=int).T


def plot_heatmap(jsonl_path: str | os.PathLike, png_path: str | os.PathLike) -> np.ndarray:
    """Write the heatmap of ``jsonl_path`` to ``png_path``; returns the plotted array."""
    from ..extras import require

    matplotlib = require("matplotlib")
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm

    grid = episode_states(read_log(jsonl_path))
    L, E = grid.shape
    cmap = plt.get_cmap("viridis" if L > 20 else "tab20", L)
    fig, ax = plt.subplots(figsize=(min(4 + 0.12 * E, 16), min(2 + 0.3 * L, 12)))
    image = ax.imshow(grid, aspect="auto", origin="lower", interpolation="nearest", cmap=cmap,
                      norm=BoundaryNorm(np.arange(-0.5, L), L))
    own = np.argwhere(grid == np.arange(L)[:, None])
    ax.scatter(own[:, 1], own[:, 0], s=8, c="white", edgecolors="black", linewidths=0.3)
    ax.set_xlabel("episode")
    ax.set_ylabel("layer")
    ax.set_title("Dynamic layer tying: the layer each layer is tied to (dot: independent)")
    bar = fig.colorbar(image, ax=ax, ticks=range(L) if L <= 24 else None)
    bar.set_label("tied to layer (own index = independent)")
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return grid
