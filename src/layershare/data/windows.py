"""Text as fixed-length token windows, for perplexity and for calibration.

The evaluation convention of the compression papers: join the split's text, tokenize it with
the model's own tokenizer, cut it into non-overlapping windows of ``seq_len`` tokens and drop
the remainder. Lines are joined with newlines (the recipes store one sentence a line).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import LayershareError


def read_text(source: str, split: str = "test", data_dir: Path | None = None) -> list[str]:
    """The lines of ``source``: a recipe name (``brown``: its ``split``) or a text file."""
    from .local import read_user_lines
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
    lines = [line for line in read_user_lines(path) if line.strip()]
    if not lines:
        raise LayershareError(f"{source}: no text")
    return lines


def token_windows(tokenizer, lines: list[str], seq_len: int, count: int | None = None,
                  what: str = "text") -> torch.Tensor:
    """``count`` (default: all) non-overlapping windows of ``seq_len`` tokens, (N, seq_len).

    ``tokenizer``: a transformers tokenizer (no special tokens are added: the windows are a
    slice of continuous text). Fewer tokens than asked for is an error that says how many
    there are.
    """
    if seq_len < 2:
        raise LayershareError(f"--seq-len must be >= 2, got {seq_len}")
    ids = tokenizer("\n".join(lines), add_special_tokens=False)["input_ids"]
    have = len(ids) // seq_len
    if have == 0 or (count is not None and count > have):
        raise LayershareError(f"{what} has {len(ids):,} tokens: {have} windows of {seq_len}, "
                              f"{count or 1} needed")
    n = have if count is None else count
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len)
