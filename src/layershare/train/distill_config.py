"""DistillConfig: the ``distill:`` section of a run config (``layershare distill``).

A run with ``distill.student`` set trains an existing layershare checkpoint (the output of
``layershare compress`` or ``convert``) towards ``distill.teacher``, the dense original, on
the run's text (``data.name: brown`` or ``text``); see :mod:`layershare.train.distill`.
Without a student every key must keep its default (set alone, it would silently do nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import LayershareError

TRAINABLE = ("lowrank", "all")
LOSSES = ("kl", "kl+lm", "lm")
HIDDEN = ("last", "all")


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class DistillConfig:
    student: str | None = _f(None, "the layershare checkpoint to train (set: a distillation run)")
    teacher: str | None = _f(None, "the dense original: transformers directory, .gguf or "
                                   "short name")
    trainable: str = _f("lowrank", "lowrank: only the low-rank factors, diagonals and norms "
                                   "(shared full-rank tensors and embeddings frozen) | all")
    loss: str = _f("kl", "kl: T^2 KL(teacher || student) | kl+lm: plus the LM loss | lm: the "
                         "LM loss alone (plain fine-tuning; the teacher only evaluates)")
    temperature: float = _f(1.0, "softmax temperature T of the KL term")
    hidden: str = _f("last", "encoders: MSE on the last hidden state | all (every layer's)")
    eval_windows: int = _f(16, "final LM test: the first N windows of the test split (0 = all)")
    eval_seq_len: int = _f(512, "final LM test: tokens per window")
    eval_sentences: int = _f(512, "final encoder test: test sentences for the embedding cosine")
    baseline: bool = _f(True, "final test: also measure the student before training and the "
                              "teacher (false: after only, for a series of runs on one student)")


def check_distill(cfg) -> None:
    """Checks of the ``distill:`` section against the rest of the run config."""
    d = cfg.distill
    if d.student is None:
        if d != DistillConfig():
            raise LayershareError("distill.* keys are set but distill.student is not: "
                                  "use layershare distill STUDENT --teacher SRC")
        return
    if not d.teacher:
        raise LayershareError("distill.teacher is required (the dense original model)")
    for name, allowed in (("trainable", TRAINABLE), ("loss", LOSSES), ("hidden", HIDDEN)):
        if getattr(d, name) not in allowed:
            raise LayershareError(f"distill.{name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(d, name)!r}")
    if type(d.baseline) is not bool:
        raise LayershareError(f"distill.baseline must be true or false, got {d.baseline!r}")
    if not (isinstance(d.temperature, (int, float)) and d.temperature > 0):
        raise LayershareError(f"distill.temperature must be > 0, got {d.temperature!r}")
    for name in ("eval_windows", "eval_seq_len", "eval_sentences"):
        value = getattr(d, name)
        if type(value) is not int or value < (0 if name == "eval_windows" else 2):
            raise LayershareError(f"distill.{name} must be an integer >= "
                                  f"{0 if name == 'eval_windows' else 2}, got {value!r}")
    if cfg.data.name not in ("brown", "text", "espeak-en"):
        raise LayershareError(f"distillation reads text (data.name brown or text) or speech "
                              f"(espeak-en, for Whisper), not {cfg.data.name}")
    if cfg.share.method != "dense" or cfg.share.transfer_at_step:
        raise LayershareError("distillation trains the student as it is: leave share.* at "
                              "its defaults (compress or convert the student first)")
    if cfg.data.tokenizer:
        raise LayershareError("distillation uses the student's own tokenizer: do not set "
                              "data.tokenizer")
