"""DistillConfig: the ``distill:`` section of a run config (``layershare distill``).

A run with ``distill.student`` set trains an existing layershare checkpoint (the output of
``layershare compress`` or ``convert``) towards ``distill.teacher``, the dense original, on
the run's text (``data.name: brown`` or ``text``); see :mod:`layershare.train.distill`.
Without a student every key must keep its default (set alone, it would silently do nothing).
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field

from ..configbase import Bool, Int, Number, Section, Str
from ..errors import LayershareError

Trainable = Literal["lowrank", "all"]
Loss = Literal["kl", "kl+lm", "lm"]
Hidden = Literal["last", "all"]
TRAINABLE, LOSSES, HIDDEN = get_args(Trainable), get_args(Loss), get_args(Hidden)


class DistillConfig(Section):
    where: ClassVar[str] = "distill"

    student: Str | None = Field(None, description=(
        "the layershare checkpoint to train (set: a distillation run)"))
    teacher: Str | None = Field(None, description=(
        "the dense original: transformers directory, .gguf or short name"))
    trainable: Trainable = Field("lowrank", description=(
        "lowrank: only the low-rank factors, diagonals and norms (shared full-rank tensors "
        "and embeddings frozen) | all"))
    loss: Loss = Field("kl", description=(
        "kl: T^2 KL(teacher || student) | kl+lm: plus the LM loss | lm: the LM loss alone "
        "(plain fine-tuning; the teacher only evaluates)"))
    temperature: Number = Field(1.0, gt=0, description="softmax temperature T of the KL term")
    hidden: Hidden = Field("last", description=(
        "encoders: MSE on the last hidden state | all (every layer's)"))
    eval_windows: Int = Field(16, ge=0, description=(
        "final LM test: the first N windows of the test split (0 = all)"))
    eval_seq_len: Int = Field(512, ge=2, description="final LM test: tokens per window")
    eval_sentences: Int = Field(512, ge=2, description=(
        "final encoder test: test sentences for the embedding cosine"))
    baseline: Bool = Field(True, description=(
        "final test: also measure the student before training and the teacher (false: after "
        "only, for a series of runs on one student)"))


def check_distill(cfg) -> None:
    """Rules of the ``distill:`` section against the rest of the run config (a
    ``model_validator`` of :class:`~layershare.train.config.RunConfig` calls it)."""
    d = cfg.distill
    if d.student is None:
        if d != DistillConfig():
            raise LayershareError("distill.* keys are set but distill.student is not: "
                                  "use layershare distill STUDENT --teacher SRC")
        return
    if not d.teacher:
        raise LayershareError("distill.teacher is required (the dense original model)")
    if cfg.data.name not in ("brown", "text", "espeak-en"):
        raise LayershareError(f"distillation reads text (data.name brown or text) or speech "
                              f"(espeak-en, for Whisper), not {cfg.data.name}")
    if cfg.share.method != "dense" or cfg.share.transfer_at_step:
        raise LayershareError("distillation trains the student as it is: leave share.* at "
                              "its defaults (compress or convert the student first)")
    if cfg.data.tokenizer:
        raise LayershareError("distillation uses the student's own tokenizer: do not set "
                              "data.tokenizer")
