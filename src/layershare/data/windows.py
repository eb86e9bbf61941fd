"""Text as fixed-length token windows, for perplexity and for calibration.

The evaluation convention of the compression papers: join the split's text, tokenize it with
the model's own tokenizer, cut it into non-overlapping windows of ``seq_len`` tokens and drop
the remainder. Lines are joined with newlines (the recipes store one sentence a line).

Bounded work: a text file is read line by line (:func:`read_text` returns an iterator) and
:func:`token_windows` tokenizes a growing prefix of it -- the first ``4 x`` the characters
of the tokens asked for, doubled until enough tokens are there -- so a 1 GB file costs what
its first few hundred kilobytes cost when 16384 tokens are asked. The windows are those of
the whole text: the prefix ends at a line end and must hold more tokens than are used (a
margin of :data:`MARGIN`), and a tokenizer's pre-tokenization never joins text across a
newline, so the tokens kept are the same as the whole text's. Only ``count=None`` (every
window) reads everything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path

import torch

from ..errors import LayershareError

MARGIN = 16  # tokens past the last one used that a prefix must hold
MAX_WINDOWS_TOKENS = 1 << 31  # windows x seq_len above this is refused (int64 ids: 16 GiB)


def read_text(source: str, split: str = "test", data_dir: Path | None = None) -> Iterable[str]:
    """The non-empty lines of ``source``: a recipe name (``brown``: its ``split``, a list) or
    a text file (an iterator that reads the file as it is consumed)."""
    from .local import iter_user_lines
    from .recipes import RECIPES, load_splits, prepare

    if source in RECIPES:
        prepare(source, data_dir, progress=False)
        splits = load_splits(source, data_dir, progress=False)
        if split not in splits or not isinstance(splits[split], list):
            raise LayershareError(f"{source} has no text split {split!r}")
        return splits[split]
    path = Path(source)
    if not path.is_file():
        raise LayershareError(f"{source}: neither a data recipe ({', '.join(RECIPES)}) nor a file")
    lines = (line for line in iter_user_lines(path) if line.strip())
    first = next(lines, None)
    if first is None:
        raise LayershareError(f"{source}: no text")
    return itertools.chain([first], lines)


def token_windows(tokenizer, lines: Iterable[str], seq_len: int, count: int | None = None,
                  what: str = "text") -> torch.Tensor:
    """``count`` (default: all) non-overlapping windows of ``seq_len`` tokens, (N, seq_len).

    ``tokenizer``: a transformers tokenizer (no special tokens are added: the windows are a
    slice of continuous text). ``lines`` is consumed only as far as the windows need (see
    the module docstring). Fewer tokens than asked for is an error that says how many
    there are.
    """
    if seq_len < 2:
        raise LayershareError(f"--seq-len must be >= 2, got {seq_len}")
    if count is not None and count < 1:
        raise LayershareError(f"{what}: at least one window is needed, got {count}")
    need = None if count is None else count * seq_len
    if need is not None and need > MAX_WINDOWS_TOKENS:
        raise LayershareError(f"{what}: {count} windows of {seq_len} tokens is more than "
                              f"{MAX_WINDOWS_TOKENS:,} tokens")
    source, taken, chars, exhausted = iter(lines), [], 0, False
    budget = None if need is None else 4 * (need + MARGIN) + 4096  # characters
    while True:
        while budget is None or chars < budget:
            line = next(source, None)
            if line is None:
                exhausted = True
                break
            taken.append(line)
            chars += len(line) + 1
        ids = tokenizer("\n".join(taken), add_special_tokens=False)["input_ids"]
        if exhausted or len(ids) >= need + MARGIN:
            break
        budget *= 2
    have = len(ids) // seq_len
    if have == 0 or (count is not None and count > have):
        raise LayershareError(f"{what} has {len(ids):,} tokens: {have} windows of {seq_len}, "
                              f"{count or 1} needed")
    n = have if count is None else count
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)
