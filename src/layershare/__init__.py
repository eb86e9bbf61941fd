"""layershare: smaller Transformers by sharing weights across layers.

    import layershare
    model = layershare.convert(model, method="residual", group_size=2, rank=64)
    print(layershare.count(model))
    layershare.save(model, "out/")          # each shared tensor stored once
    model = layershare.load("out/")
    print(layershare.count(layershare.load_structure("out/")))  # reads no weights
    dense = layershare.merge(model)         # plain model of the original class
"""

import importlib

# Lazy (PEP 562): ``import layershare.deploy`` (ONNX Runtime generation) must not import
# torch, so the package's torch-based API is loaded on first use.
_API = {"load": ".checkpoint", "load_structure": ".checkpoint", "save": ".checkpoint",
        "ShareConfig": ".config", "ParamCount": ".count", "count": ".count",
        "LayershareError": ".errors", "merge": ".merge", "SharingPlan": ".plan",
        "convert": ".surgery"}

__all__ = ["convert", "count", "save", "load", "load_structure", "merge", "ShareConfig",
           "SharingPlan", "ParamCount", "LayershareError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
