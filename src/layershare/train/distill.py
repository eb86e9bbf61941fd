"""Distillation tasks: the dense original teaches its compressed layershare checkpoint.

Post-training fitting (``layershare compress``) is the first half of LightFormer's recipe
(SVD weight transfer, then fine-tuning) and of Relaxed Recursive Transformers (looped
layers, then uptraining); this is the second half, as tasks of the ordinary trainer.

Causal LMs -- Hinton et al. (2015), per next-token distribution, mean over target tokens::

    L_KL = T^2 * KL(p_T || p_S),  p = softmax(z / T)

(the T^2 keeps the gradient scale independent of T). ``kl+lm`` adds the student's own
cross-entropy on the text (the usual ``alpha = 0.5`` up to a factor 2 in the learning rate);
``lm`` is the LM loss alone, plain fine-tuning, the baseline for the same tokens.

Encoders (MiniLM, BERT-like; TinyBERT's hidden-state loss): the mean squared error of the
student's last hidden state against the teacher's over non-padding tokens, or the mean over
every layer's output (``hidden: all``). A Whisper encoder fits the same loss on log-mel
features of espeak-en utterances (train/distill_speech.py).

The teacher runs in eval mode under ``no_grad`` (bf16 weights on CUDA), one batch at a time:
its logits or hidden states are never stored for the data set.

``trainable: lowrank`` trains the low-rank parts only -- ResidualLinear's ``lora_A``,
``lora_B``, ``diag`` (and bias); every LowRankLinear parameter (its factors ``lora_B``,
``lora_A``, diagonal, bias; with Basis Sharing the basis is a shared *low-rank* factor) -- and
the norms. Frozen: the shared full-rank matrices (ResidualLinear ``shared``, tied layers),
embeddings and the LM head, and any matrix left dense. Frozen tensors have
``requires_grad=False``, so the trainer's optimizer (built from those that require grad)
holds no state for them.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LayershareError
from ..lowrank import LowRankLinear
from ..residual import ResidualLinear
from .tasks import LMTask, Task, to_device

LOWRANK_PARAMS = {ResidualLinear: ("lora_A", "lora_B", "diag", "bias"),
                  LowRankLinear: ("lora_A", "lora_B", "diag", "bias")}


def kl_divergence(student_logits: Tensor, teacher_logits: Tensor,
                  temperature: float = 1.0) -> Tensor:
    """``T^2`` times the mean over positions of ``KL(softmax(t/T) || softmax(s/T))``, fp32."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)
    return kl.mean() * temperature ** 2


def hidden_mse(student: list[Tensor], teacher: list[Tensor], mask: Tensor) -> Tensor:
    """Mean over layers of the per-element MSE over the tokens where ``mask`` is 1."""
    m = mask.to(torch.float32)[..., None]
    width = student[0].shape[-1]
    losses = [(((s.float() - t.float()) ** 2) * m).sum() / (m.sum() * width)
              for s, t in zip(student, teacher)]
    return torch.stack(losses).mean()


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or type(module).__name__.endswith(
        ("Norm", "RMSNorm", "LayerNorm"))


def select_trainable(model: nn.Module, mode: str, within: nn.Module | None = None) -> dict:
    """Set ``requires_grad`` for ``trainable: mode``; returns the parameter counts.
    ``within``: only that submodule's parameters may train (a Whisper student's encoder)."""
    if mode == "all":
        model.requires_grad_(True)
    else:
        model.requires_grad_(False)
        for module in model.modules():
            names = next((n for cls, n in LOWRANK_PARAMS.items() if isinstance(module, cls)), ())
            if is_norm(module):
                names = [n for n, _ in module.named_parameters(recurse=False)]
            for name in names:
                p = getattr(module, name, None)
                if isinstance(p, nn.Parameter):
                    p.requires_grad_(True)
    if within is not None:
        inside = {id(p) for p in within.parameters()}
        for p in model.parameters():
            if id(p) not in inside:
                p.requires_grad_(False)
    unique = {id(p): p for p in model.parameters()}.values()
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    if trainable == 0:
        raise LayershareError(f"--trainable {mode}: the student has no low-rank factors, "
                              "diagonals or norms to train; use --trainable all")
    return {"trainable_params": trainable,
            "frozen_params": sum(p.numel() for p in unique if not p.requires_grad)}


def is_lm(model: nn.Module) -> bool:
    """A model with an output (vocabulary) projection: distilled on logits."""
    get = getattr(model, "get_output_embeddings", None)
    return callable(get) and get() is not None


def width(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "hidden_size", None) or getattr(config, "d_model", None)


def check_pair(student: nn.Module, teacher: nn.Module) -> None:
    """Teacher and student must read the same tokens into the same width."""
    if is_lm(student) != is_lm(teacher):
        kind = {True: "a language model", False: "an encoder"}
        raise LayershareError(f"the student is {kind[is_lm(student)]} but the teacher "
                              f"{kind[is_lm(teacher)]}")
    sv, tv = (m.get_input_embeddings().num_embeddings for m in (student, teacher))
    if sv != tv:
        raise LayershareError(f"teacher and student have different vocabularies ({tv:,} vs "
                              f"{sv:,} tokens): distil from the model the student was made from")
    if width(student) != width(teacher):
        raise LayershareError(f"teacher and student have different hidden sizes "
                              f"({width(teacher)} vs {width(student)})")


def split_lines(lines: list[str]) -> dict[str, list[str]]:
    """One text file as splits, in line order: 90% train, then 5% valid, 5% test."""
    if len(lines) < 3:
        raise LayershareError(f"the text has {len(lines)} non-blank lines; at least 3 needed "
                              "(train, valid, test)")
    n = len(lines)
    held = max(1, round(0.05 * n))
    return {"train": lines[:n - 2 * held], "valid": lines[n - 2 * held:n - held],
            "test": lines[n - held:]}


class _Teacher:
    """The teacher beside a task: no parameters of the trained module, moved on first use."""

    def __init__(self, teacher: nn.Module):
        self.model = teacher.eval().requires_grad_(False)

    def on(self, device: torch.device) -> nn.Module:
        p = next(self.model.parameters())
        if p.device != device:
            dtype = torch.bfloat16 if device.type == "cuda" else p.dtype
            self.model.to(device=device, dtype=dtype)
        return self.model


class DistillLMTask(LMTask):
    """Windows of ``seq_len + 1`` tokens of the text, tokenized with the student's tokenizer
    (lines joined by newlines, no special tokens: the protocol of layershare.evaluate)."""

    kind = "distill-lm"

    def __init__(self, cfg, tok, splits, teacher: nn.Module, student: nn.Module | None):
        self.hf_tok, self.teacher, self.student = tok, _Teacher(teacher), student
        super().__init__(cfg, tok, splits)

    def prepare(self, split, lines):
        ids = self.hf_tok("\n".join(lines), add_special_tokens=False)["input_ids"]
        if len(ids) < self.cfg.train.seq_len + 1:
            raise LayershareError(f"the {split} split has {len(ids):,} tokens; a window of "
                                  f"--seq-len {self.cfg.train.seq_len} needs "
                                  f"{self.cfg.train.seq_len + 1}")
        return torch.tensor(ids, dtype=torch.long)

    def build_model(self):
        model, self.student = self.student, None
        return model

    def teacher_logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.teacher.on(x.device)(input_ids=x, use_cache=False).logits

    def terms(self, logits: Tensor, x: Tensor, y: Tensor) -> dict:
        """The objective and its parts (``kl`` at T = 1 too, the fidelity figure)."""
        d = self.cfg.distill
        nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        out = {"nll": nll}
        if d.loss != "lm" or not torch.is_grad_enabled():
            t = self.teacher_logits(x)
            out["kl_t"] = kl_divergence(logits, t, d.temperature)
            out["kl"] = out["kl_t"] if d.temperature == 1 else kl_divergence(logits, t)
        out["loss"] = {"lm": nll, "kl": out.get("kl_t"),
                       "kl+lm": nll + out["kl_t"] if "kl_t" in out else None}[d.loss]
        return out

    def loss(self, model, batch, train=True):
        ids = batch["ids"]
        x, y = ids[:, :-1], ids[:, 1:]
        return self.terms(model(input_ids=x, use_cache=False).logits, x, y)["loss"]

    @torch.no_grad()
    def evaluate(self, model, split, device, autocast=nullcontext, limit=0) -> dict:
        """Token-weighted means of the objective, KL (T = 1) and NLL over ``limit`` batches."""
        sums, count = {"loss": 0.0, "kl": 0.0, "nll": 0.0}, 0
        was_training = model.training
        model.eval()
        for batch in self.eval_batches(split, self.cfg.eval.batch_size, limit):
            batch = to_device(batch, device)
            x, y = batch["ids"][:, :-1], batch["ids"][:, 1:]
            with autocast():
                terms = self.terms(model(input_ids=x, use_cache=False).logits, x, y)
            for key in sums:
                sums[key] += float(terms[key]) * batch["targets"]
            count += batch["targets"]
        model.train(was_training)
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out["ppl"] = float(torch.tensor(min(out["nll"], 50.0)).exp())
        out["targets"] = count
        return out


class DistillEncoderTask(Task):
    """Sentences (with the tokenizer's special tokens, cut at ``seq_len``), padded per batch;
    MSE of hidden states against the teacher's."""

    kind = "distill-encoder"

    def __init__(self, cfg, tok, splits, teacher: nn.Module, student: nn.Module | None):
        self.hf_tok, self.teacher, self.student = tok, _Teacher(teacher), student
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        super().__init__(cfg, tok, splits)

    def prepare(self, split, lines):
        return self.hf_tok(list(lines), truncation=True, max_length=self.cfg.train.seq_len)[
            "input_ids"]

    def batch(self, split, indices):
        rows = [self.items[split][i] for i in indices]
        w = max(len(r) for r in rows)
        ids = torch.tensor([r + [self.pad_id] * (w - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([[1] * len(r) + [0] * (w - len(r)) for r in rows], dtype=torch.long)
        n = int(mask.sum())
        return {"ids": ids, "mask": mask, "targets": n, "tokens": n}

    def build_model(self):
        model, self.student = self.student, None
        return model

    def hidden(self, model, batch) -> list[Tensor]:
        every = self.cfg.distill.hidden == "all"
        out = model(**self.inputs(model, batch), output_hidden_states=every)
        return list(out.hidden_states[1:]) if every else [out.last_hidden_state]

    @staticmethod
    def inputs(model, batch) -> dict:
        """Ids and mask; BERT-like models get explicit zero token types. Why: the teacher's
        non-persistent ``token_type_ids`` buffer was found holding garbage (index out of
        range) when it was loaded in one process after a layershare.load of the student."""
        kw = {"input_ids": batch["ids"], "attention_mask": batch["mask"]}
        if getattr(getattr(model, "config", None), "type_vocab_size", None):
            kw["token_type_ids"] = torch.zeros_like(batch["ids"])
        return kw

    def loss(self, model, batch, train=True):
        with torch.no_grad():
            teacher = self.hidden(self.teacher.on(batch["ids"].device), batch)
        return hidden_mse(self.hidden(model, batch), teacher, batch["mask"])

    @torch.no_grad()
    def evaluate(self, model, split, device, autocast=nullcontext, limit=0) -> dict:
        """Token-weighted MSE and the mean cosine of mean-pooled sentence embeddings."""
        total, cos, count, sentences = 0.0, 0.0, 0, 0
        was_training = model.training
        model.eval()
        for batch in self.eval_batches(split, self.cfg.eval.batch_size, limit):
            batch = to_device(batch, device)
            with autocast():
                total += float(self.loss(model, batch)) * batch["targets"]
                s = model(**self.inputs(model, batch)).last_hidden_state
                teacher = self.teacher.on(device)
                t = teacher(**self.inputs(teacher, batch)).last_hidden_state
            m = batch["mask"][..., None].float()
            pool = [F.normalize((h.float() * m).sum(1) / m.sum(1), dim=-1) for h in (s, t)]
            cos += float((pool[0] * pool[1]).sum())
            count += batch["targets"]
            sentences += len(batch["ids"])
        model.train(was_training)
        return {"loss": total / max(count, 1), "cosine": cos / max(sentences, 1),
                "targets": count}


def read_distill_splits(cfg) -> dict[str, list[str]]:
    """brown's three splits, or the user's text: one file split 90/5/5, or three files."""
    from ..data.local import read_user_lines
    from ..data.windows import read_text

    d = cfg.data
    if d.name == "brown":
        return {s: read_text("brown", s, d.dir) for s in ("train", "valid", "test")}
    if d.valid is None:
        path = Path(d.train)
        if not path.is_file():
            raise LayershareError(f"--data text {path}: no such file")
        return split_lines([ln for ln in read_user_lines(path) if ln.strip()])
    return {s: list(read_text(str(getattr(d, s)), s)) for s in ("train", "valid", "test")}


def load_student(path: str) -> nn.Module:
    from ..checkpoint import META, load

    directory = Path(path)
    if not (directory / META).is_file():
        what = "no such directory" if not directory.exists() else f"no {META}"
        raise LayershareError(f"{path}: not a layershare checkpoint ({what}); make one with "
                              "layershare compress SRC --keep F --out DIR")
    return load(directory)
