"""The options of a compression, checked: :func:`check_options`.

Its own module because they are checked twice, by fit.py when it compresses and by
source.py before it reads any model or builds any calibration data (a bad option then
fails in one line, not after minutes of loading), and neither should import the other for
that.
"""

from __future__ import annotations

from ..config import ShareConfig
from ..errors import LayershareError
from . import budget

ALLOCATIONS = ("uniform", "spectrum")
TARGETS = ("original", "local")


def check_options(method: str = "residual", keep: float | None = None, rank: int | None = None,
                  group_size: int = 2, allocate: str = "uniform", target: str = "local",
                  **share) -> ShareConfig:
    """The ShareConfig of these options, or a one-line error about the first bad one
    (before any model is read or calibration data is built)."""
    if (keep is None) == (rank is None):
        raise LayershareError("give exactly one of keep= and rank=")
    if allocate not in ALLOCATIONS:
        raise LayershareError(f"unknown allocation {allocate!r}; choose {' or '.join(ALLOCATIONS)}")
    if allocate == "spectrum" and (keep is None or method == "tied"):
        raise LayershareError("--allocate spectrum needs --keep, calibration data and a "
                              "residual or lowrank method")
    if target not in TARGETS:
        raise LayershareError(f"unknown target {target!r}; choose {' or '.join(TARGETS)}")
    if keep is not None:
        budget.check_keep(keep)
    return ShareConfig(method=method, group_size=group_size,
                       rank=rank if rank is not None else (0 if method == "residual" else 1),
                       **share)
