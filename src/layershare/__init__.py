"""layershare: smaller Transformers by sharing weights across layers.

    import layershare
    model = layershare.convert(model, method="residual", group_size=2, rank=64)
    print(layershare.count(model))
    layershare.save(model, "out/")          # each shared tensor stored once
    model = layershare.load("out/")
    dense = layershare.merge(model)         # plain model of the original class
"""

from .checkpoint import load, save
from .config import ShareConfig
from .count import ParamCount, count
from .errors import LayershareError
from .merge import merge
from .plan import SharingPlan
from .surgery import convert

__all__ = ["convert", "count", "save", "load", "merge", "ShareConfig", "SharingPlan",
           "ParamCount", "LayershareError"]
__version__ = "0.1.0"
