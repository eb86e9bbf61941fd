"""layershare: smaller Transformers by sharing weights across layers.

    import layershare
    model = layershare.convert(model, method="residual", group_size=2, rank=64)
    print(layershare.count(model))
    layershare.save(model, "out/")          # each shared tensor stored once
    model = layershare.load("out/")
    print(layershare.count(layershare.load_structure("out/")))  # reads no weights
    dense = layershare.merge(model)         # plain model of the original class
"""

from .checkpoint import load, load_structure, save
from .config import ShareConfig
from .count import ParamCount, count
from .errors import LayershareError
from .merge import merge
from .plan import SharingPlan
from .surgery import convert

__all__ = ["convert", "count", "save", "load", "load_structure", "merge", "ShareConfig",
           "SharingPlan", "ParamCount", "LayershareError"]
__version__ = "0.1.0"
