"""Post-training compression: calibration (calibrate.py), whitened fits (whiten.py), budgets
(budget.py, allocate.py), the layer-by-layer runner (sequential.py), the public function
:func:`~layershare.compress.api.compress` (api.py) and compression by name (source.py).

``layershare.compress(model, calib=..., method=..., keep=...)`` is the public call. The
function and this package share the name ``layershare.compress`` (its modules must stay
importable as ``layershare.compress.whiten``...), so the package forwards calls to the
function: ``layershare.compress(...)`` and ``layershare.compress.compress(...)`` are the same.
"""

import sys
import types

from .api import CalibratedFit, CompressResult, compress, compress_model

__all__ = ["compress", "compress_model", "CompressResult", "CalibratedFit"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
