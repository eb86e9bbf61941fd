"""layershare: smaller Transformers by sharing weights across layers.

    import layershare
    model = layershare.convert(model, method="residual", group_size=2, rank=64)
    print(layershare.count(model))
    layershare.save(model, "out/")          # each shared tensor stored once
    model = layershare.load("out/")
    print(layershare.count(layershare.load_structure("out/")))  # reads no weights
    dense = layershare.merge(model)         # plain model of the original class

    result = layershare.compress(model, calib=batches, method="lowrank", keep=0.8)
    layershare.distill("small/", teacher="smollm2-135m", data="brown", out="dist/")
    layershare.export("dist/model", "deploy/", quantize="int8")   # ONNX Runtime
"""

import importlib

# Lazy (PEP 562): ``import layershare.deploy`` (ONNX Runtime generation) must not import
# torch, so the package's torch-based API is loaded on first use.
_API = {"load": ".checkpoint", "load_structure": ".checkpoint", "save": ".checkpoint",
        "ShareConfig": ".config", "ParamCount": ".count", "count": ".count",
        "LayershareError": ".errors", "merge": ".merge", "SharingPlan": ".plan",
        "convert": ".surgery", "distill": ".train.distill_api", "export": ".formats.onnx"}
# ``layershare.compress`` is the package layershare/compress/, which forwards calls to its
# function (compress/__init__.py): one name for the call and for the modules behind it.
_PACKAGES = {"compress": ".compress"}

__all__ = ["convert", "count", "save", "load", "load_structure", "merge", "compress",
           "distill", "export", "ShareConfig", "SharingPlan", "ParamCount", "LayershareError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _PACKAGES:
        return importlib.import_module(_PACKAGES[name], __name__)
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
