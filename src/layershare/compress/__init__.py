"""Post-training compression: calibration (calibrate.py), whitened fits (whiten.py), budgets
(budget.py, allocate.py), the layer-by-layer runner (sequential.py), the options (options.py)
and result (result.py) of a compression, the fit of a model in memory (fit.py), compression
by name (source.py) and the public function :func:`~layershare.compress.api.compress`
(api.py), which dispatches to those two.

``layershare.compress(model, calib=..., method=..., keep=...)`` is the public call. The
function and this package share the name ``layershare.compress`` (its modules must stay
importable as ``layershare.compress.whiten``...), so the package forwards calls to the
function: ``layershare.compress(...)`` and ``layershare.compress.compress(...)`` are the same.
"""

import sys
import types

from .api import compress
from .fit import CalibratedFit, compress_model
from .result import CompressResult

__all__ = ["compress", "compress_model", "CompressResult", "CalibratedFit"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
