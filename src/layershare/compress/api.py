"""``layershare.compress``, the public call: a model in memory goes to
:func:`~layershare.compress.fit.compress_model` (fit.py: the fit itself, described there), a
model by path or short name to :func:`~layershare.compress.source.compress_source` (source.py:
it opens the model, builds its calibration data and calls ``compress_model`` in turn).

    import layershare
    result = layershare.compress(model, calib=batches, method="residual", group_size=2, keep=0.6)
    result = layershare.compress("smollm2-135m", calib="brown", method="lowrank", keep=0.6)
    layershare.save(result.model, "small/")

The dispatch lives here, above both, so that the package's imports run one way (api ->
source -> fit -> options, result) and no module imports another that imports it back.
``compress_model``, ``CompressResult`` and ``CalibratedFit`` were defined here once: they are
still importable from here.
"""

from __future__ import annotations

import os

from ..errors import LayershareError
from .fit import CalibratedFit, compress_model
from .result import CompressResult
from .source import compress_source

__all__ = ["compress", "compress_model", "CompressResult", "CalibratedFit"]


def compress(model, calib=None, **options) -> CompressResult:
    """The public call, ``layershare.compress``. ``model`` in memory: ``calib`` is a list of
    batches, or None / ``"none"`` for the data-free fit, see
    :func:`~layershare.compress.fit.compress_model`. ``model`` by path or short name:
    ``calib`` is a data name, a text file, ``"none"``, or None for the model's default data
    (with ``calib_tokens``, ``seq_len``, ``batch_size``, ``data_dir``), see
    :func:`~layershare.compress.source.compress_source`."""
    if isinstance(model, (str, os.PathLike)):
        return compress_source(model, calib, **options)
    if calib == "none":
        calib = None
    if isinstance(calib, (str, os.PathLike)):
        raise LayershareError(f"calib={str(calib)!r} names data, which needs the model by "
                              "name or path (layershare.compress('DIR', calib='brown', ...)); "
                              "for a model in memory pass calibration batches")
    return compress_model(model, calib, **options)
