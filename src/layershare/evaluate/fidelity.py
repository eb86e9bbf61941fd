"""Fidelity of a compressed encoder: embedding cosine to the original, and a linear probe.

* **cosine**: mean-pooled (attention-masked), L2-normalised sentence embeddings of held-out
  sentences, compared sentence by sentence with the original model's; 1.0 = unchanged.
* **probe**: a logistic-regression classifier (scikit-learn, fixed settings: lbfgs, C = 1,
  1,000 iterations, embeddings as features) trained on the embeddings of a labelled train
  subset and scored on a test subset (``wordnet-supersense``: 45 supersense labels from
  glosses). The same subsets and settings for every model, so accuracies compare.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm


def embed(model: nn.Module, tokenizer, sentences: list[str], batch_size: int = 64,
          max_length: int = 128, progress: bool = False) -> torch.Tensor:
    """(N, d) mean-pooled, L2-normalised last hidden states."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(sentences), batch_size), desc="embed", disable=not progress):
            enc = tokenizer(sentences[i:i + batch_size], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            out.append(F.normalize((h * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def embedding_cosine(model, reference, tokenizer, sentences: list[str]) -> float:
    """Mean cosine between ``model``'s and ``reference``'s sentence embeddings."""
    return float((embed(model, tokenizer, sentences) * embed(reference, tokenizer, sentences))
                 .sum(-1).mean())


def probe_subsets(splits: dict, train: int = 3000, test: int = 1000, seed: int = 0):
    """Fixed random subsets ``(texts, labels)`` of a classification recipe's train and test."""
    rng = random.Random(seed)
    pick = {}
    for split, size in (("train", train), ("test", test)):
        rows = list(splits[split])
        rng.shuffle(rows)
        pick[split] = rows[:size]
    return pick


def probe_accuracy(model, tokenizer, subsets: dict) -> float:
    """Test accuracy of a logistic-regression probe on ``model``'s sentence embeddings."""
    from ..extras import require

    LogisticRegression = require("sklearn.linear_model").LogisticRegression

    (train_x, train_y), (test_x, test_y) = (
        (embed(model, tokenizer, [text for _, text in subsets[s]]).numpy(),
         [label for label, _ in subsets[s]]) for s in ("train", "test"))
    probe = LogisticRegression(C=1.0, max_iter=1000)
    probe.fit(train_x, train_y)
    return float(probe.score(test_x, test_y))
