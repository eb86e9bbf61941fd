"""Tiny synthetic data sets and run configs for the trainer tests (CPU, seconds each)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

WORDS = ("the cat dog bird sat ran on over under mat tree house big small red blue green "
         "old new one two three").split()


def lm_lines(n: int, rng: random.Random) -> list[str]:
    """Sentences from a simple Markov chain: learnable in a few dozen steps."""
    lines = []
    for _ in range(n):
        w = rng.choice(WORDS[:4])
        words = [w]
        for _ in range(rng.randint(3, 9)):
            w = WORDS[(WORDS.index(w) + 1 + rng.randint(0, 1)) % len(WORDS)]
            words.append(w)
        lines.append(" ".join(words))
    return lines


def write(path: Path, lines) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture
def text_data(tmp_path) -> dict:
    rng = random.Random(0)
    d = tmp_path / "text"
    d.mkdir()
    return {s: write(d / f"{s}.txt", lm_lines(n, rng))
            for s, n in (("train", 600), ("valid", 60), ("test", 60))}


@pytest.fixture
def copy_data(tmp_path) -> dict:
    """A 'translation' task whose target is the source: BLEU must rise quickly."""
    rng = random.Random(1)
    d = tmp_path / "copy"
    d.mkdir()
    out = {}
    for split, n in (("train", 800), ("valid", 40), ("test", 40)):
        lines = [" ".join(rng.choice(WORDS[:8]) for _ in range(rng.randint(2, 5)))
                 for _ in range(n)]
        out[split] = {"src": write(d / f"{split}.src", lines),
                      "tgt": write(d / f"{split}.tgt", lines)}
    return out


@pytest.fixture
def class_data(tmp_path) -> dict:
    """Label = the colour word in the text (3 classes)."""
    rng = random.Random(2)
    d = tmp_path / "classes"
    d.mkdir()
    out = {}
    for split, n in (("train", 600), ("valid", 60), ("test", 90)):
        rows = []
        for _ in range(n):
            label = rng.choice(["red", "blue", "green"])
            words = [rng.choice(WORDS[:10]) for _ in range(rng.randint(2, 6))]
            words.insert(rng.randint(0, len(words)), label)
            rows.append(f"{label.upper()}\t{' '.join(words)}")
        out[split] = write(d / f"{split}.tsv", rows)
    return out
