"""Training from scratch: config, trainer, checkpoints/resume, evaluation.

    from layershare.train import load_config, train
    cfg = load_config("configs/lm-brown-residual.yaml", ["train.steps=200"])
    results = train(cfg, "runs/residual")      # OUT/results.json, OUT/model, ...

``torchrun --nproc_per_node=N -m layershare train ...`` runs the same code under DDP.
A config with ``distill.student`` set is a distillation run (train/distill_run.py; the
``layershare distill`` verb writes such a config).
"""

from .config import RunConfig, config_from_dict, describe, load_config
from .schedule import lr_at

__all__ = ["RunConfig", "load_config", "config_from_dict", "describe", "lr_at", "train"]


def train(cfg, out_dir, progress: bool = True, overwrite: bool = False) -> dict:
    """Run (or resume) the training described by ``cfg`` into ``out_dir``; returns results.
    ``overwrite``: discard what ``out_dir`` holds and start afresh (layershare.outputs)."""
    if cfg.distill.student is not None:  # distillation (train/distill.py, distill_run.py)
        from .distill_run import distill
        return distill(cfg, out_dir, progress, overwrite)
    from .trainer import train as _train
    return _train(cfg, out_dir, progress, overwrite)
