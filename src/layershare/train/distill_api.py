"""``layershare.distill``: win back a compressed model's quality from its original, in Python.

    import layershare
    results = layershare.distill("small/", teacher="smollm2-135m", data="brown",
                                 out="dist/", steps=300, trainable="lowrank")
    student = layershare.load("dist/model")

One run of the ordinary trainer (train/distill_run.py): progress bar, metrics, best/last
checkpoints, and calling it again with the same arguments resumes a killed run. ``data`` is
``brown``, ``espeak-en`` (a Whisper student) or a path to a text file (split 90/5/5 by line
order). Every keyword is a distillation setting of the run config; ``settings`` takes any
other run-config assignment (``["train.grad_accum=2"]``). Returns the run's results
(``OUT/results.json``: perplexity or embedding cosine before and after, parameters, speed).
``layershare distill`` on the command line parses its flags and calls this function.
"""

from __future__ import annotations

import os

from ..errors import LayershareError

RECIPES = ("brown", "espeak-en")


def quote(text: str) -> str:
    """A YAML scalar that stays a string whatever the path looks like."""
    return "'" + str(text).replace("'", "''") + "'"


def data_settings(data: str) -> list[str]:
    """``brown`` | ``espeak-en`` | a text file, as run-config assignments."""
    if data in RECIPES:
        return [f"data.name={data}"]
    if not isinstance(data, (str, os.PathLike)) or not str(data).strip():
        raise LayershareError(f"distill: data is brown, espeak-en or a text file, got {data!r}")
    return ["data.name=text", f"data.train={quote(os.fspath(data))}"]


def distill(student, teacher, out, data="brown", *, steps: int = 200, seq_len: int = 256,
            batch_size: int = 8, grad_accum: int = 1, lr: float = 1e-4,
            warmup: int | None = None, weight_decay: float = 0.0, trainable: str = "lowrank",
            loss: str = "kl", temperature: float = 1.0, hidden: str = "last",
            eval_every: int = 50, eval_batches: int = 4, save_every: int = 50,
            eval_windows: int = 16, eval_seq_len: int = 512, baseline: bool = True,
            seed: int = 0, device: str = "auto", parallel: str = "ddp",
            settings: list[str] = (), progress: bool = True, overwrite: bool = False) -> dict:
    """Distil ``student`` (a layershare checkpoint) towards ``teacher`` (the dense original:
    a transformers directory, a .gguf file or a short name) into ``out``; see the module doc."""
    from . import load_config, train

    if not all(isinstance(v, int) and v >= 1 for v in (steps, batch_size)):
        raise LayershareError(f"distill: steps and batch_size must be integers >= 1, got "
                              f"{steps!r}, {batch_size!r}")
    warmup = warmup if warmup is not None else steps // 10
    sets = data_settings(data) + [
        f"distill.student={quote(student)}", f"distill.teacher={quote(teacher)}",
        f"distill.trainable={trainable}", f"distill.loss={quote(loss)}",
        f"distill.temperature={temperature}", f"distill.hidden={hidden}",
        f"distill.eval_windows={eval_windows}", f"distill.eval_seq_len={eval_seq_len}",
        f"distill.baseline={str(bool(baseline)).lower()}",
        f"train.steps={steps}", f"train.seq_len={seq_len}", f"train.batch_size={batch_size}",
        f"train.grad_accum={grad_accum}", f"train.lr={lr}", f"train.warmup={warmup}",
        f"train.weight_decay={weight_decay}", f"train.eval_every={eval_every}",
        f"train.eval_batches={eval_batches}", f"train.save_every={save_every}",
        f"train.log_every={max(1, min(10, steps // 20))}",
        f"train.seed={seed}", f"train.device={device}", f"train.parallel={parallel}",
        f"eval.batch_size={min(batch_size, 8)}",
    ] + list(settings)
    cfg = load_config(None, sets)  # distill.student set: a distillation run
    return train(cfg, out, progress=progress, overwrite=overwrite)
