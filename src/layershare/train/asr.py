"""The ``asr`` task: a CTC speech recogniser trained from scratch on log-mel frames.

Batches are *buckets*: the utterances of a split, sorted by length, cut greedily into groups
whose padded size (utterances x longest) stays within ``train.bucket_frames`` input frames,
so a batch carries little padding (the bucketing of ESPnet and fairseq). The buckets are
fixed once per split; :class:`~layershare.train.tasks.Order` shuffles them per epoch, so
every utterance is seen once per epoch and a step's batch is a pure function of (seed,
step) as for the other tasks. ``train.batch_size`` counts buckets per step. Evaluation
buckets come in a fixed shuffled order, so ``train.eval_batches`` buckets are a fixed
subset of every length, not the shortest utterances.

Features: a recipe that caches them (``espeak-asr``: ``{split}.mel.npy``) is memory-mapped;
any other speech recipe's audio goes through :func:`~layershare.data.audio.log_mel` once at
start-up. The score is WER by greedy CTC decoding (:mod:`layershare.evaluate.wer`'s
normalisation and jiwer); the best checkpoint is the one of lowest valid WER.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..errors import LayershareError
from ..models.speech import CHARS, SpeechEncoder, SpeechEncoderConfig, encode_text, greedy_decode
from ..outputs import replace_file
from .tasks import Task, to_device

CHAR_TABLE = "tokenizer.json"  # the run's symbol table, where other tasks keep their BPE


class Features:
    """A split's log-mel frames (float16, one utterance after another) and its utterances:
    ``(start, frames, symbol ids, text)``."""

    def __init__(self, mel: np.ndarray, rows: list[tuple[int, int, list[int], str]]):
        self.mel, self.rows = mel, rows

    @classmethod
    def from_cache(cls, mel: np.ndarray, index: list[dict]) -> "Features":
        return cls(mel, [(r["mel_start"], r["mel_frames"], encode_text(r["text"]), r["text"])
                         for r in index])

    @classmethod
    def from_utterances(cls, utterances) -> "Features":
        """Compute the frames of :class:`~layershare.data.audio.Utterance` s (no cache)."""
        from ..data.audio import log_mel

        mels, rows, start = [], [], 0
        for u in utterances:
            mel = log_mel(u.audio).astype(np.float16)
            mels.append(mel)
            rows.append((start, len(mel), encode_text(u.text), u.text))
            start += len(mel)
        return cls(np.concatenate(mels) if mels else np.zeros((0, 80), np.float16), rows)


def make_buckets(frames: list[int], budget: int,
                 shuffle_seed: int | None = None) -> list[list[int]]:
    """Utterance indices grouped by length so that ``len(group) * longest <= budget``
    (a longer utterance than the budget gets a bucket of its own). ``shuffle_seed``: the
    buckets in a fixed random order instead of shortest first."""
    order = sorted(range(len(frames)), key=lambda i: (frames[i], i))
    buckets, current = [], []
    for i in order:
        if current and (len(current) + 1) * frames[i] > budget:
            buckets.append(current)
            current = []
        current.append(i)
    if current:
        buckets.append(current)
    if shuffle_seed is not None:
        perm = torch.randperm(len(buckets), generator=torch.Generator().manual_seed(shuffle_seed))
        buckets = [buckets[int(k)] for k in perm]
    return buckets


class ASRTask(Task):
    kind = "asr"
    best_metric = ("wer", "min")

    def prepare(self, split: str, features: Features):
        if not features.rows:
            raise LayershareError(f"the {split} split has no utterances")
        empty = [text for _, _, ids, text in features.rows if not ids]
        if empty:
            raise LayershareError(f"{split}: an utterance with no letters to recognise "
                                  f"({empty[0]!r})")
        frames = [n for _, n, _, _ in features.rows]
        seed = None if split == "train" else 0
        return {"features": features,
                "buckets": make_buckets(frames, self.cfg.train.bucket_frames, seed)}

    def size(self, split: str) -> int:
        return len(self.items[split]["buckets"])

    def utterances(self, split: str, buckets: list[int]) -> list[int]:
        return [u for b in buckets for u in self.items[split]["buckets"][b]]

    def batch(self, split: str, indices: list[int]) -> dict:
        """Padded frames of the utterances of buckets ``indices``, their symbol ids."""
        features = self.items[split]["features"]
        rows = [features.rows[u] for u in self.utterances(split, indices)]
        width = max(n for _, n, _, _ in rows)
        feats = torch.zeros(len(rows), width, features.mel.shape[1])
        for b, (start, n, _, _) in enumerate(rows):
            feats[b, :n] = torch.from_numpy(np.asarray(features.mel[start:start + n],
                                                       dtype=np.float32))
        labels = [ids for _, _, ids, _ in rows]
        return {"feats": feats, "lengths": torch.tensor([n for _, n, _, _ in rows]),
                "labels": torch.tensor([s for ids in labels for s in ids], dtype=torch.long),
                "label_lengths": torch.tensor([len(ids) for ids in labels]),
                "texts": [text for _, _, _, text in rows],
                "targets": sum(len(ids) for ids in labels),
                "tokens": sum(n for _, n, _, _ in rows)}

    def loss(self, model, batch: dict, train: bool = True):
        return model.loss(batch["feats"], batch["lengths"], batch["labels"],
                          batch["label_lengths"])

    @torch.no_grad()
    def evaluate(self, model, split: str, device, autocast=nullcontext, limit: int = 0) -> dict:
        """CTC loss per character and WER (greedy decoding) over the split, or over its
        first ``limit`` buckets (a fixed subset)."""
        from ..evaluate.wer import word_errors

        was_training = model.training
        model.eval()
        total, count, refs, hyps = 0.0, 0, [], []
        for batch in self.eval_batches(split, 1, limit):
            texts = batch.pop("texts")
            batch = to_device(batch, device)
            with autocast():
                log_probs, lengths = model(batch["feats"], batch["lengths"])
            loss = torch.nn.functional.ctc_loss(
                log_probs.float().transpose(0, 1), batch["labels"], lengths,
                batch["label_lengths"], blank=0, reduction="sum", zero_infinity=True)
            total += float(loss)
            count += batch["targets"]
            refs += texts
            hyps += greedy_decode(log_probs, lengths)
        model.train(was_training)
        errors = word_errors(refs, hyps)
        return {"loss": total / max(count, 1), "wer": errors["wer"], "targets": count,
                "utterances": len(refs), "hypotheses": list(zip(refs, hyps))}

    def build_model(self):
        m = self.cfg.model
        return SpeechEncoder(SpeechEncoderConfig(
            d_model=m.d_model, n_heads=m.heads, d_ff=m.ffn or 4 * m.d_model, pos=m.pos,
            dropout=float(m.dropout), n_layers=m.layers, conv_channels=m.conv_channels))

    def test_splits(self) -> list[str]:
        """Every split of the recipe that is a test set (``test``, ``test-voices``...)."""
        return [s for s in self.items if s.startswith("test")]

    def test_metrics(self, model, device, out: Path | None = None,
                     autocast=nullcontext) -> dict:
        """WER and loss of every test split; hypotheses to ``out/SPLIT.hyp.jsonl``. The
        task's own test protocol, which evaluate.py's ``split_metrics`` hands over to (a
        method, not a function here: evaluate.py need not import this module)."""
        result = {}
        for split in self.test_splits():
            fig = self.evaluate(model, split, device, autocast)
            result.update({f"{split}_loss": fig["loss"], f"{split}_wer": fig["wer"],
                           f"{split}_utterances": fig["utterances"]})
            if out is not None:  # renamed into place, never written through a link
                replace_file(Path(out) / f"{split}.hyp.jsonl", "".join(
                    json.dumps({"ref": ref, "hyp": hyp}, ensure_ascii=False) + "\n"
                    for ref, hyp in fig["hypotheses"]))
        return result


def asr_splits(cfg, progress: bool = True, fetch: bool = True) -> dict[str, Features]:
    """The run's speech splits as :class:`Features` (cached frames where the recipe has them);
    the recipe prepared first if needed, or with ``fetch=False`` only if prepared already."""
    from ..data import load_splits, prepare
    from ..data.espeak_asr import SPLITS, read_features
    from ..data.recipes import prepared

    name = cfg.data.name
    if name == "espeak-asr":
        directory = prepare(name, cfg.data.dir, progress) if fetch else prepared(name, cfg.data.dir)
        return {s: Features.from_cache(*read_features(directory, s)) for s in SPLITS}
    splits = load_splits(name, cfg.data.dir, progress, fetch=fetch)
    missing = [s for s in ("train", "valid", "test") if s not in splits]
    if missing:
        raise LayershareError(f"{name} has no {missing[0]} split: it cannot train a recogniser")
    return {s: Features.from_utterances(u) for s, u in splits.items()}


def write_char_table(out: Path) -> None:
    """``OUT/tokenizer.json``: the CTC symbols in id order (index 0 the blank)."""
    path = Path(out) / CHAR_TABLE
    if not path.is_file():  # a dangling link is replaced, not written through
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, json.dumps({"layershare_ctc_chars": list(CHARS)}) + "\n")

