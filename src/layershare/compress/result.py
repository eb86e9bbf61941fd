"""What a compression returns: :class:`CompressResult`.

Its own module because both ways in build one (fit.py for a model in memory, source.py for
a model by name, which fills in ``calib_description``), and neither should import the other
for a dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass
class CompressResult:
    """The compressed model and what the fit achieved."""

    model: nn.Module
    keep: float                    # achieved fraction of the stack's matrix parameters
    errors: dict[str, list[float]] = field(default_factory=dict)  # matrix name -> relative
    #                                whitened error ||(W - W') X^T||^2 / ||W X^T||^2 per layer
    seconds: float = 0.0
    calib_tokens: int = 0
    calib_description: str = ""    # what the fit saw (compress/source.py)

    def error_table(self) -> list[tuple[str, float, float]]:
        """(matrix name, mean, max) relative whitened error."""
        return [(name, sum(e) / len(e), max(e)) for name, e in self.errors.items() if e]
