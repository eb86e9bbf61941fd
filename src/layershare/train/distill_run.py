"""A distillation run: the ordinary trainer with a distillation task and its own last act.

Everything that makes a run dependable is :class:`~layershare.train.trainer.Trainer`'s own:
progress bar, metrics.jsonl, loss plot, ``best``/``last`` checkpoints, resume after kill -9
to the identical weights, bf16 autocast on CUDA and fp32 on CPU, torchrun DDP. This
subclass builds the task (:mod:`.distill`), freezes what ``distill.trainable`` keeps fixed
before the optimizer is built, and at the end measures the student before and after (and the
teacher) with the test protocol of :mod:`layershare.evaluate`:

* LMs: the first ``distill.eval_windows`` non-overlapping windows of ``eval_seq_len`` tokens
  of the test split; perplexity, ``KL(teacher || model)`` and top-1 agreement;
* encoders: mean cosine of mean-pooled sentence embeddings to the teacher's, on the first
  ``eval_sentences`` test sentences.

``OUT/model`` is an ordinary layershare checkpoint (the best validation checkpoint) with the
student's tokenizer; ``OUT/results.json`` holds the figures.

FSDP2 (``train.parallel: fsdp``, CLI ``--parallel fsdp``, under torchrun). The *student* is
sharded exactly as ``layershare train`` shards a model (:func:`.fsdp.shard`: one unit per
group of layers sharing tensors, then the root), after :meth:`prepare_model` froze what
``distill.trainable`` keeps fixed. ``--trainable lowrank`` thus puts frozen and trainable
parameters in one unit (a group's frozen shared matrices beside its layers' trainable
factors; the frozen embeddings beside the trainable final norm in the root). FSDP2 supports
that: every parameter keeps its ``requires_grad`` when sharded, a unit reduce-scatters only
the gradients that exist, and AdamW (built from the parameters that require grad) holds no
state for the frozen ones; tests/distill/test_distill_fsdp.py checks the frozen tensors bit
for bit and the sharded optimizer state key by key.

The *teacher is not sharded*: every rank holds its own full frozen copy (eval mode,
``no_grad``, bf16 on CUDA). Why: (1) rank 0 evaluates alone -- the ``valid`` figures during
training and the final before/after/teacher test (the FSDP trainer's rank-0 replica
protocol, :mod:`.fsdp`) -- and a sharded teacher could only run forward with every rank
taking part in its all-gathers; (2) a forward-only model has no gradients or optimizer
state to shard, so sharding would save only its weights (2 bytes a parameter in bf16,
against 16 for a student parameter trained with AdamW: fp32 weight, gradient, two moments)
at the price of an all-gather of the whole teacher every micro-batch; (3) the models this
trainer distils fit one device, which rank 0's full student replica assumes anyway. A
teacher too large for one device would need sharded evaluation first.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .. import save
from ..formats.hub import save_tokenizer, tokenizer_files
from .distill import (
    DistillEncoderTask,
    DistillLMTask,
    check_pair,
    is_lm,
    load_student,
    read_distill_splits,
    select_trainable,
)
from .distill_speech import build_speech_task
from .tasks import Task
from .trainer import Trainer, train


def build_distill_task(cfg) -> Task:
    """Student, teacher (checked against each other), the student's tokenizer, the data: the
    speech task (distill_speech.py) for Whisper, else the LM or encoder task (distill.py).
    Here rather than in distill.py, which distill_speech.py builds on (no import cycle)."""
    from ..compress.speech import is_speech_model
    from ..formats.hub import auto_tokenizer, from_local

    d = cfg.distill
    student = load_student(d.student)
    teacher = from_local(d.teacher)
    check_pair(student, teacher)
    if is_speech_model(teacher) or cfg.data.name == "espeak-en":
        return build_speech_task(cfg, student, teacher)
    if is_lm(teacher):  # windows longer than a learned position table: one line, not an IndexError
        from ..limits import fits_positions
        for model, who in ((student, "student"), (teacher, "teacher")):
            fits_positions(model, cfg.train.seq_len, f"--seq-len (for the {who})")
            fits_positions(model, d.eval_seq_len, f"--eval-seq-len (for the {who})")
    tok = auto_tokenizer(d.student if tokenizer_files(d.student) else d.teacher)
    splits = read_distill_splits(cfg)
    cls = DistillLMTask if is_lm(teacher) else DistillEncoderTask
    return cls(cfg, tok, splits, teacher, student)


class DistillTrainer(Trainer):
    def make_task(self, setup: bool):
        return build_distill_task(self.cfg)

    def prepare_model(self, model):
        root = getattr(self.task, "trainable_root", None)  # speech: the encoder only
        self.trainable = select_trainable(model, self.cfg.distill.trainable,
                                          root(model) if root else None)
        self.task.student = None  # a resumed run does not need the loaded student
        return model

    def before_loop(self, log) -> None:
        """A fresh run evaluates the student as given (step 0, tokens 0): the start of the
        quality curve, and the ``best`` checkpoint should no step improve on it."""
        if self.step == 0 and not self.history:
            self.evaluate(log)

    def quality(self, model) -> dict:
        """The final test figures of ``model`` (see the module docstring)."""
        d, task = self.cfg.distill, self.task
        teacher = task.teacher.on(self.device)
        model = model.to(self.device).eval()
        with torch.no_grad(), self.autocast():
            if task.kind == "distill-lm":
                from ..evaluate.perplexity import lm_quality
                r = lm_quality(model, self.test_windows(), self.cfg.eval.batch_size,
                               None if model is teacher else teacher, progress=False)
                keep = ("perplexity", "nll", "kl", "top1")
                return {k: r[k] for k in keep if k in r}
            batches = -(-d.eval_sentences // self.cfg.eval.batch_size)
            r = task.evaluate(model, "test", self.device, self.autocast, limit=batches)
            return {"cosine": r["cosine"], "mse": r["loss"]}

    def test_windows(self) -> torch.Tensor:
        from ..data.windows import token_windows

        d, tok = self.cfg.distill, self.task.hf_tok
        lines = self.task.raw["test"]
        have = len(tok("\n".join(lines), add_special_tokens=False)["input_ids"]) // d.eval_seq_len
        n = min(d.eval_windows, have) if d.eval_windows else have
        windows = token_windows(tok, lines, d.eval_seq_len, max(n, 1), what="the test split")
        return windows.to(self.device)

    def protocol(self) -> str:
        d = self.cfg.distill
        if self.task.kind == "distill-lm":
            w = self.test_windows()
            return (f"{self.cfg.data.name} test split, first {len(w)} non-overlapping windows "
                    f"of {w.shape[1]} tokens ({w.numel() - len(w):,} predicted tokens)")
        return f"{self.cfg.data.name} test split, first {d.eval_sentences} sentences"

    def measure(self, model) -> dict:
        """Quality after (and, with ``distill.baseline``, before and of the teacher)."""
        d = self.cfg.distill
        after = self.quality(model)
        before = teacher = None
        if d.baseline:
            before_model = load_student(d.student)
            before = self.quality(before_model)
            del before_model
            teacher = self.quality(self.task.teacher.model)
        return {"task": self.task.kind, "data": self.cfg.data.name, "student": d.student,
                "teacher": d.teacher, "trainable": d.trainable, "loss": d.loss,
                "temperature": d.temperature, **self.trainable,
                "batch_size": self.cfg.train.batch_size, "seq_len": self.cfg.train.seq_len,
                "lr": self.cfg.train.lr, "torch_threads": torch.get_num_threads(),
                "valid_history": self.history, "protocol": self.protocol(),
                "before": before, "after": after, "teacher_test": teacher}

    def save_model(self, model) -> None:
        """``OUT/model`` with the student's tokenizer (else the teacher's) beside it."""
        d = self.cfg.distill
        with tempfile.TemporaryDirectory() as tok_dir:
            src = d.student if tokenizer_files(d.student) else d.teacher
            save_tokenizer(src, Path(tok_dir))
            save(model, self.out / "model",
                 extra_files={f.name: f for f in Path(tok_dir).iterdir()})

    def summary(self, results: dict) -> str:
        return summary(results)


def summary(r: dict) -> str:
    key = "perplexity" if "perplexity" in r["after"] else "cosine"
    was = f"{r['before'][key]:.4g} -> " if r["before"] else ""
    teacher = f" (teacher {r['teacher_test'][key]:.4g})" if r["teacher_test"] else ""
    return (f"distill ({r['trainable']}, {r['loss']}): {key} {was}{r['after'][key]:.4g}{teacher}, "
            f"{r['unique_params']:,} unique parameters, {r['train_tokens']:,} tokens at "
            f"{r['train_tokens_per_s']:,.0f} tokens/s")


def distill(cfg, out, progress: bool = True, overwrite: bool = False) -> dict:
    """Distil (or resume) ``cfg`` (its ``distill.student`` set) into ``out``; the results."""
    return train(cfg, out, progress, overwrite, trainer_class=DistillTrainer)
