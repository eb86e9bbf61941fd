"""``model.init_from``: start a run from a trained dense model's weights.

LightFormer's recipe is train dense, transfer the trained weights by SVD into shared
low-rank factors, fine-tune. ``share.transfer_at_step`` does all three in one run; with
``model.init_from`` a run instead starts from a finished dense run (``share.init: mean``
then transfers its weights at step 0), so several variants reuse one dense training instead
of repeating it. The model must have the same class and shapes, and the run the same
tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import LayershareError
from ..paths import file_inside
from .datasets import TOKENIZER


def load_dense_weights(model: nn.Module, source: str) -> None:
    """Copy a trained dense model's weights into the fresh ``model`` (``model.init_from``):
    a run directory (its ``model/``) or a layershare checkpoint of the same class and shapes."""
    from ..checkpoint import load as load_checkpoint
    from ..formats.gate import what_is

    try:
        found = what_is(Path(source).expanduser())
    except LayershareError as exc:
        raise LayershareError(f"model.init_from: {exc}") from None
    if found.kind not in ("run", "layershare"):
        raise LayershareError(f"model.init_from: {source} is not a run directory or a "
                              f"layershare checkpoint (a {found.kind} model)")
    trained = load_checkpoint(found.model)
    if getattr(trained, "layershare_config", None) is not None:
        raise LayershareError(f"model.init_from: {source} shares weights; start from a dense "
                              "model (or merge it first: layershare merge)")
    if type(trained) is not type(model):
        raise LayershareError(f"model.init_from: {source} is a {type(trained).__name__}, this "
                              f"run builds a {type(model).__name__}")
    theirs, ours = trained.state_dict(), model.state_dict()
    mismatch = sorted(k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape)
    if mismatch or set(theirs) - set(ours):
        name = (mismatch or sorted(set(theirs) - set(ours)))[0]
        raise LayershareError(f"model.init_from: {source} does not fit this config's model "
                              f"(first difference: {name})")
    model.load_state_dict(theirs)


def same_tokenizer(source: Path, out: Path) -> None:
    """A run started from another run's weights must read text with its tokenizer."""
    theirs, ours = source / TOKENIZER, out / TOKENIZER
    if not (theirs.exists() or theirs.is_symlink()) or not ours.is_file():
        return
    theirs = file_inside(source, TOKENIZER, "tokenizer")  # the run named, not a link out of it
    if theirs.read_bytes() != ours.read_bytes():
        raise LayershareError(f"model.init_from: {source} was trained with another tokenizer "
                              f"than this run's {ours}; use the same data and vocab_size")
