"""The four tasks: their data (tokenized once), batches, model and losses.

Every batch is a pure function of (split, sample indices), and the training sample indices
of a step are a pure function of (seed, step) (:class:`Order`), so a resumed run or a
DDP rank sees exactly the samples an uninterrupted single-process run would.

* ``lm``: the training sentences, each followed by ``</s>``, concatenated into one token
  stream cut into windows of ``seq_len + 1`` (nanoGPT's layout; no padding anywhere).
* ``translation``: source ``x </s>``, target ``<s> y </s>``, padded per batch.
* ``summarisation``: translation's batches and model, body -> synopsis, scored by ROUGE.
* ``classification``: text ids (cut at ``seq_len``), padded per batch, and a label id.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import Tensor

from ..data import BOS_ID, EOS_ID, PAD_ID
from ..evaluate.rouge import require_rouge
from ..models import (
    DecoderLM,
    DecoderLMConfig,
    EncoderClassifier,
    EncoderClassifierConfig,
    Seq2Seq,
    Seq2SeqConfig,
)
from .config import RunConfig
from .decode import decode_rows
from .ids import pad
from .metrics import scores


class Order:
    """Sample ``i`` of the run (``step * batch + j``) -> dataset index: a fresh permutation
    of the dataset per epoch, from ``seed`` and the epoch number only."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self._perms = n, seed, {}

    def __call__(self, i: int) -> int:
        epoch = i // self.n
        if epoch not in self._perms:
            self._perms = {epoch: torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))}
        return int(self._perms[epoch][i % self.n])


def encode(tok, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch(list(texts))]


class Task:
    """Base: ``items[split]`` are samples; subclasses say how to batch and score them."""

    kind = ""
    best_metric = ("loss", "min")  # the valid figure that picks checkpoints/best

    def __init__(self, cfg: RunConfig, tok, splits: dict, labels: list[str] | None = None):
        self.cfg, self.tok, self.labels, self.raw = cfg, tok, labels, splits
        self.items = {name: self.prepare(name, rows) for name, rows in splits.items()}

    def size(self, split: str) -> int:
        return len(self.items[split])

    def token_ids(self, split: str) -> Tensor:
        """Every token id of a split's samples: one stream (LM), or the id lists of each
        sample's tuple ((source, target), (label, text))."""
        items = self.items[split]
        if isinstance(items, Tensor):
            return items
        return torch.tensor([t for item in items for part in item if isinstance(part, list)
                             for t in part], dtype=torch.long)

    def prepare(self, split: str, rows: list):
        """Tokenize a split's raw rows once, at start-up."""
        raise NotImplementedError

    def batch(self, split: str, indices: list[int]) -> dict:
        """Tensors of the samples ``indices``, plus ``targets`` (what the mean loss averages
        over) and ``tokens`` (input tokens, for tokens/s)."""
        raise NotImplementedError

    def loss(self, model, batch: dict, train: bool = True):
        raise NotImplementedError

    def build_model(self):
        """A fresh dense model for this task and ``cfg.model``."""
        raise NotImplementedError

    def eval_batches(self, split: str, batch_size: int, limit: int = 0):
        """Consecutive batches covering the split (the first ``limit`` batches if > 0)."""
        n = self.size(split)
        starts = range(0, n, batch_size)
        for k, start in enumerate(starts):
            if limit and k >= limit:
                return
            yield self.batch(split, list(range(start, min(start + batch_size, n))))

    def evaluate(self, model, split: str, device, autocast=nullcontext, limit: int = 0) -> dict:
        """What a training evaluation logs of the split (``limit`` batches if > 0): the loss
        figures here; a task may add to them (translation's ``eval.valid_decode``) or have
        its own (asr, distillation)."""
        return self.loss_figures(model, split, device, autocast, limit)

    @torch.no_grad()
    def loss_figures(self, model, split: str, device, autocast=nullcontext,
                     limit: int = 0) -> dict:
        """Token-weighted mean loss over the split (``limit`` batches if > 0), and perplexity
        or accuracy: what the test figures (evaluate.py) build on, without the extras of
        :meth:`evaluate` (which they would compute again, or differently)."""
        total, count, correct = 0.0, 0, 0
        was_training = model.training
        model.eval()
        for batch in self.eval_batches(split, self.cfg.eval.batch_size, limit):
            batch = to_device(batch, device)
            with autocast():
                loss, hits = self.scores(model, batch)
            total += float(loss) * batch["targets"]
            count += batch["targets"]
            correct += hits
        model.train(was_training)
        out = {"loss": total / max(count, 1), "targets": count}
        if self.kind == "classification":
            out["acc"] = correct / max(count, 1)
        else:
            out["ppl"] = math.exp(min(out["loss"], 50.0))
        return out

    def scores(self, model, batch) -> tuple:
        """Mean loss of a batch and the number of correct predictions (classification)."""
        return self.loss(model, batch, train=False), 0


class LMTask(Task):
    kind = "lm"

    def prepare(self, split, sentences):
        ids = [t for row in encode(self.tok, sentences) for t in row + [EOS_ID]]
        return torch.tensor(ids, dtype=torch.long)

    def size(self, split):
        """Training windows of seq_len + 1 tokens (consecutive windows share one token)."""
        return max((len(self.items[split]) - 1) // self.cfg.train.seq_len, 1)

    def batch(self, split, indices):
        L, stream = self.cfg.train.seq_len, self.items[split]
        x = torch.stack([stream[i * L: i * L + L + 1] for i in indices])
        return {"ids": x, "targets": x[:, 1:].numel(), "tokens": x[:, :-1].numel()}

    def eval_batches(self, split, batch_size, limit=0):
        """Every token of the split is predicted once: full windows, then the tail."""
        L, stream = self.cfg.train.seq_len, self.items[split]
        full = (len(stream) - 1) // L
        for k, start in enumerate(range(0, full, batch_size)):
            if limit and k >= limit:
                return
            yield self.batch(split, list(range(start, min(start + batch_size, full))))
        tail = stream[full * L:]
        if len(tail) > 1 and not limit:
            yield {"ids": tail[None], "targets": len(tail) - 1, "tokens": len(tail) - 1}

    def loss(self, model, batch, train=True):
        ids = batch["ids"]
        if is_transformers(model):  # GPT2LMHeadModel: no .loss(x, y); same mean token loss
            logits = model(input_ids=ids[:, :-1]).logits
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(),
                                                     ids[:, 1:].flatten())
        return model.loss(ids[:, :-1], ids[:, 1:])

    def build_model(self):
        m = self.cfg.model
        if m.arch == "gpt2":
            return gpt2_lm(self.cfg, self.tok)
        return DecoderLM(DecoderLMConfig(**common(self.cfg, self.tok), n_layers=m.layers,
                                         max_len=self.cfg.train.seq_len))


class TranslationTask(Task):
    kind = "translation"
    decode_max_len = 0  # test-time decoding: 0 = the model's rule, 2 * source length + 10
    decoded_metric = "bleu"  # what eval.valid_decode scores the decoded valid pairs by

    @property
    def best_metric(self) -> tuple[str, str]:
        """Valid loss, or with ``eval.valid_decode`` the decoded metric: a model's loss can
        still fall while its output stops improving (LightFormer's protocol is BLEU)."""
        return (self.decoded_metric, "max") if self.cfg.eval.valid_decode else ("loss", "min")

    def evaluate(self, model, split, device, autocast=nullcontext, limit=0):
        """The loss; on ``valid`` with ``eval.valid_decode`` = N, also the metric of greedy
        decoding of its first N pairs (a fixed subset: comparable across evaluations)."""
        out = super().evaluate(model, split, device, autocast, limit)
        n = self.cfg.eval.valid_decode
        if split == "valid" and n:
            rows = self.raw[split][:n]
            hyps = decode_rows(self, model, rows, device, 1, autocast)
            out.update(scores(self, hyps, [t for _, t in rows]))
        return out

    def prepare(self, split, pairs):
        L = self.cfg.train.seq_len
        src = encode(self.tok, [s for s, _ in pairs])
        tgt = encode(self.tok, [t for _, t in pairs])
        return [(s[:L - 1] + [EOS_ID], [BOS_ID] + t[:L - 2] + [EOS_ID]) for s, t in zip(src, tgt)]

    def batch(self, split, indices):
        rows = [self.items[split][i] for i in indices]
        src, tgt = pad([s for s, _ in rows]), pad([t for _, t in rows])
        n_tgt = int((tgt[:, 1:] != PAD_ID).sum())
        return {"src": src, "tgt": tgt, "targets": n_tgt,
                "tokens": int((src != PAD_ID).sum()) + n_tgt}

    def loss(self, model, batch, train=True):
        return model.loss(batch["src"], batch["tgt"],
                          label_smoothing=self.cfg.train.label_smoothing if train else 0.0)

    def build_model(self):
        m = self.cfg.model
        return Seq2Seq(Seq2SeqConfig(**common(self.cfg, self.tok),
                                     encoder_layers=m.encoder_layers or m.layers,
                                     decoder_layers=m.decoder_layers or m.layers,
                                     max_len=self.cfg.train.seq_len + 8,
                                     bos_id=BOS_ID, eos_id=EOS_ID))


class SummarisationTask(TranslationTask):
    """Long text -> its summary (``debian-summaries``: package description -> synopsis) on
    translation's Seq2Seq model, batches and loss; sources longer than ``train.seq_len``
    tokens are cut, like translation's (a description's first sentences carry its synopsis).
    At test time beam search is scored by ROUGE (train/metrics.py), and decoding stops at
    the longest training summary: a summary is much shorter than its source, so translation's
    ``2 * source + 10`` would only let an unconverged model babble for hundreds of steps."""

    kind = "summarisation"
    decoded_metric = "rougeL"

    def __init__(self, cfg: RunConfig, tok, splits: dict, labels: list[str] | None = None):
        require_rouge()  # a missing rouge-score fails here, not after the training
        super().__init__(cfg, tok, splits, labels)
        self.decode_max_len = max(len(t) - 1 for _, t in self.items["train"])  # no <s>


class ClassificationTask(Task):
    """Text -> one of ``labels``; test accuracy and macro-F1 (scikit-learn)."""

    kind = "classification"
    best_metric = ("acc", "max")

    def __init__(self, cfg: RunConfig, tok, splits: dict, labels: list[str] | None = None):
        from ..extras import require
        require("sklearn")  # macro-F1 at the end: a missing scikit-learn fails here, not then
        super().__init__(cfg, tok, splits, labels)

    def prepare(self, split, rows):
        index = {name: i for i, name in enumerate(self.labels)}
        ids = encode(self.tok, [text for _, text in rows])
        L = self.cfg.train.seq_len
        return [(index[label], row[:L] or [EOS_ID]) for (label, _), row in zip(rows, ids)]

    def batch(self, split, indices):
        rows = [self.items[split][i] for i in indices]
        ids = pad([r for _, r in rows])
        return {"ids": ids, "labels": torch.tensor([y for y, _ in rows]), "targets": len(rows),
                "tokens": int((ids != PAD_ID).sum())}

    def loss(self, model, batch, train=True):
        return model.loss(batch["ids"], batch["labels"])

    def scores(self, model, batch):
        logits = model(batch["ids"]).float()
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
        return loss, int((logits.argmax(-1) == batch["labels"]).sum())

    @torch.no_grad()
    def predictions(self, model, split: str, device, autocast=nullcontext) -> tuple[list, list]:
        """(true labels, predicted labels) as class indices over the whole split."""
        was_training = model.training
        model.eval()
        truth, guess = [], []
        for batch in self.eval_batches(split, self.cfg.eval.batch_size):
            batch = to_device(batch, device)
            with autocast():
                guess += model(batch["ids"]).argmax(-1).tolist()
            truth += batch["labels"].tolist()
        model.train(was_training)
        return truth, guess

    def build_model(self):
        m = self.cfg.model
        return EncoderClassifier(EncoderClassifierConfig(
            **common(self.cfg, self.tok), n_layers=m.layers, n_classes=len(self.labels),
            pool=m.pool, max_len=self.cfg.train.seq_len))


def is_transformers(model) -> bool:
    return type(model).__module__.startswith("transformers.")


def gpt2_lm(cfg: RunConfig, tok):
    """``model.arch: gpt2``: a transformers GPT2LMHeadModel with the run's sizes, from scratch,
    so the same surgery (and DLT's TiedStack) runs on the real GPT-2 code, not only on the
    reference DecoderLM. GPT-2 has learned positions only; its context is ``seq_len``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ..errors import LayershareError

    m = cfg.model
    if m.pos != "learned":
        raise LayershareError("model.arch=gpt2 has learned positions: set model.pos=learned")
    p = float(m.dropout)
    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=cfg.train.seq_len,
                        n_embd=m.d_model, n_layer=m.layers, n_head=m.heads, n_inner=m.ffn,
                        resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, bos_token_id=EOS_ID,
                        eos_token_id=EOS_ID, pad_token_id=PAD_ID)
    return GPT2LMHeadModel(config)


def common(cfg: RunConfig, tok) -> dict:
    m = cfg.model
    return dict(vocab_size=tok.get_vocab_size(), d_model=m.d_model, n_heads=m.heads,
                d_ff=m.ffn or 4 * m.d_model, pos=m.pos, dropout=float(m.dropout), pad_id=PAD_ID)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v
            for k, v in batch.items()}


TASK_CLASSES = {"lm": LMTask, "translation": TranslationTask,
                "summarisation": SummarisationTask, "classification": ClassificationTask}
