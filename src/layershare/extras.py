"""Optional dependencies: the core (convert, save, load, merge, compress) needs none of them.

``pip install layershare`` installs what converting, saving, loading, merging and compressing
need; training plots, test-time metrics and speech are extras. :func:`require` imports one
of their modules where it is used and, when it is missing, says in one line which extra
brings it -- never an ImportError traceback at the end of a training run.
"""

from __future__ import annotations

import importlib

from .errors import LayershareError

#: module -> (what needs it, the extra that installs it)
EXTRAS = {
    "matplotlib": ("plots (loss.png, Pareto plots)", "train"),
    "sacrebleu": ("BLEU", "eval"),
    "sklearn": ("the linear probe of encoder fidelity and macro-F1", "eval"),
    "rouge_score": ("ROUGE", "eval"),
    "jiwer": ("word error rates", "speech"),
    "soxr": ("resampling audio", "speech"),
}


def require(module: str):
    """``import module`` (a dotted name is fine), or a one-line error naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        what, extra = EXTRAS.get(top, (module, None))
        hint = f"pip install 'layershare[{extra}]'" if extra else f"pip install {top}"
        raise LayershareError(f"{what} needs the {top} package: {hint}") from None
