"""Byte-level BPE tokenizers trained on a training split with the ``tokenizers`` library.

Byte-level means every string encodes (no unknown characters ever), so ``<unk>`` is only
reserved. The four special tokens always get ids 0..3 (``<pad> <s> </s> <unk>``) so model
code can hard-wire them. Training reads the inputs in the order given, in one pass, so the
same inputs and settings give a byte-identical ``tokenizer.json``. For translation, pass
both languages' training files: one joint vocabulary lets source and target share
embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import LayershareError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
N_BYTES = 256
FILENAME = "tokenizer.json"


def _texts(texts_or_files: Iterable) -> Iterator[str]:
    for item in texts_or_files:
        if isinstance(item, os.PathLike):
            path = Path(item)
            if not path.is_file():
                raise LayershareError(f"tokenizer training file {path} does not exist")
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    yield line.rstrip("\r\n")
        elif isinstance(item, str):
            yield item
        else:
            raise LayershareError("train_tokenizer: items must be str texts or Path files, "
                                  f"got {type(item).__name__}")


def _out_file(out_path) -> Path:
    out = Path(out_path)
    return out if out.suffix == ".json" else out / FILENAME


def train_tokenizer(texts_or_files: Iterable, vocab_size: int, out_path,
                    min_frequency: int = 2) -> Path:
    """Train a byte-level BPE on texts (``str``) and/or files (``Path``, one text a line).

    ``out_path`` is a ``.json`` file or a directory (``tokenizer.json`` goes inside).
    Pass the TRAINING split only: a tokenizer fit on test text leaks it. Returns the file.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(texts_or_files, (str, bytes)):
        raise LayershareError("train_tokenizer: pass a list of texts, or of Path objects for "
                              "files, not a single string")
    if not isinstance(vocab_size, int) or vocab_size < N_BYTES + len(SPECIAL_TOKENS):
        raise LayershareError(f"vocab_size must be an integer >= "
                              f"{N_BYTES + len(SPECIAL_TOKENS)} (256 bytes + 4 specials), "
                              f"got {vocab_size!r}")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    seen = [0]

    def counted():
        for text in _texts(texts_or_files):
            seen[0] += 1
            yield text

    tok.train_from_iterator(counted(), trainer=trainer)
    if seen[0] == 0:
        raise LayershareError("train_tokenizer: no training text given")
    _check_specials(tok, "freshly trained tokenizer")
    out = _out_file(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tok.save(str(tmp))
    os.replace(tmp, out)
    return out


def _check_specials(tok, where: str) -> None:
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise LayershareError(f"{where}: special tokens {', '.join(SPECIAL_TOKENS)} must have "
                              f"ids 0..3, found {ids}")


def load_tokenizer(path):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` (or a directory holding one)."""
    from tokenizers import Tokenizer

    file = _out_file(path)
    if not file.is_file():
        raise LayershareError(f"no tokenizer at {file}")
    try:
        tok = Tokenizer.from_file(str(file))
    except Exception as exc:  # the Rust side raises plain Exception on bad JSON
        raise LayershareError(f"{file} is not a valid tokenizer.json ({exc})") from exc
    _check_specials(tok, str(file))
    return tok
