"""From ``cfg.data`` to a :class:`~layershare.train.tasks.Task`: splits, tokenizer, labels.

The tokenizer a run uses is copied to ``OUT/tokenizer.json`` the first time and read from
there afterwards, so a resumed run, ``eval``, ``translate`` and ``generate`` all see the
exact vocabulary the model was trained with.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..data import (
    RECIPES,
    load_splits,
    load_tokenizer,
    recipe_dir,
    train_recipe_tokenizer,
    train_tokenizer,
)
from ..data.local import load_parallel_splits, load_text_splits, read_user_lines
from ..data.split import SPLITS
from ..errors import LayershareError, first_line
from ..paths import file_inside
from .config import RunConfig
from .tasks import TASK_CLASSES, Task

TOKENIZER, LABELS = "tokenizer.json", "labels.json"


def read_splits(cfg: RunConfig, progress: bool = True, fetch: bool = True) -> dict:
    """The raw rows per split: sentences, (src, tgt) pairs or (label, text) pairs; a recipe
    prepared first if needed, or with ``fetch=False`` only if prepared already."""
    d = cfg.data
    own = {"train": d.train, "valid": d.valid, "test": d.test}
    if d.name == "text":
        return load_text_splits(own)
    if d.name == "parallel":
        return load_parallel_splits(own)
    if d.name == "classes":
        return {s: _read_tsv(Path(own[s])) for s in SPLITS}
    return load_splits(d.name, d.dir, progress, fetch=fetch)


def _read_tsv(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise LayershareError(f"classes recipe: file {path} does not exist")
    rows = []
    for number, line in enumerate(read_user_lines(path), 1):
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep:
            raise LayershareError(f"{path}:{number}: expected label<TAB>text")
        rows.append((label, text))
    return rows


def fetched(name: str) -> bool:
    """A built-in recipe (fetched from a registry), as opposed to the user's own files."""
    return name in RECIPES and RECIPES[name].fetched


def train_texts(cfg: RunConfig, splits: dict) -> list[str]:
    rows = splits["train"]
    if cfg.task == "lm":
        return rows
    if cfg.task in ("translation", "summarisation"):
        return [s for s, _ in rows] + [t for _, t in rows]
    return [text for _, text in rows]


def tokenizer_for(cfg: RunConfig, splits: dict, out: Path):
    """``OUT/tokenizer.json`` if present; else ``data.tokenizer``, or a BPE trained on the
    training split (both languages for translation; for a recipe, trained once and cached
    as ``DATA_DIR/NAME/tokenizer-VOCAB/``), copied there."""
    target = out / TOKENIZER
    if not _present(target):
        out.mkdir(parents=True, exist_ok=True)
        if cfg.data.tokenizer:
            shutil.copyfile(Path(cfg.data.tokenizer).expanduser(), target)
        elif fetched(cfg.data.name):  # cached beside the data, rebuilt with it
            cached = recipe_dir(cfg.data.name, cfg.data.dir) / f"tokenizer-{cfg.model.vocab_size}"
            if not (cached / TOKENIZER).is_file():
                train_recipe_tokenizer(cfg.data.name, cfg.model.vocab_size, cfg.data.dir,
                                       progress=False)
            shutil.copyfile(cached / TOKENIZER, target)
        else:
            train_tokenizer(train_texts(cfg, splits), cfg.model.vocab_size, target)
    # a run directory may come from elsewhere: its tokenizer.json must not lead out of it
    return load_tokenizer(file_inside(out, TOKENIZER, "tokenizer"))


def _present(path: Path) -> bool:
    """Anything at ``path``, a dangling symlink too: such a file is read through
    :func:`file_inside` (which refuses it), never created or written through."""
    return path.exists() or path.is_symlink()


def labels_for(cfg: RunConfig, splits: dict, out: Path) -> list[str] | None:
    """Class names in id order, kept in ``OUT/labels.json``; None unless classification."""
    if cfg.task != "classification":
        return None
    path = out / LABELS
    if _present(path):
        labels = _read_labels(out)
        # a label the list lacks would be a KeyError when the splits are prepared
        unknown = {label for s in SPLITS for label, _ in splits[s]} - set(labels)
        if unknown:
            raise LayershareError(f"{path} lacks labels of the data: {sorted(unknown)[:5]}")
        return labels
    if cfg.data.name == "wordnet-supersense":
        from ..data import wordnet
        labels = wordnet.labels(recipe_dir(cfg.data.name, cfg.data.dir))
    else:
        labels = sorted({label for label, _ in splits["train"]})
    unknown = {label for s in SPLITS for label, _ in splits[s]} - set(labels)
    if unknown:
        raise LayershareError(f"labels in valid/test but not in train: {sorted(unknown)[:5]}")
    path.write_text(json.dumps(labels) + "\n")
    return labels


def _read_labels(out: Path) -> list[str]:
    """``OUT/labels.json`` as written by :func:`labels_for`, or one line saying what is wrong
    with it (a run directory is user input: it may be damaged or hand-edited)."""
    path = file_inside(out, LABELS, "class names")
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise LayershareError(f"{path}: corrupted ({first_line(exc)})") from None
    if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)
            and len(set(labels)) == len(labels)):
        raise LayershareError(f"{path}: expected a JSON list of distinct class names "
                              "(strings)")
    return labels


def build_task(cfg: RunConfig, out: Path, progress: bool = True, setup: bool = True) -> Task:
    """The run's task with tokenized splits. ``setup=False`` (DDP ranks other than 0, after
    rank 0 did it; ``eval`` of a finished run) only reads what is prepared and written:
    nothing is fetched or trained."""
    if cfg.task == "asr":  # characters, no tokenizer to train
        from .asr import ASRTask, asr_splits, write_char_table

        splits = asr_splits(cfg, progress and setup, fetch=setup)
        write_char_table(out)
        return ASRTask(cfg, None, splits)
    splits = read_splits(cfg, progress and setup, fetch=setup)
    if not setup and not (out / TOKENIZER).is_file():
        raise LayershareError(f"{out / TOKENIZER} missing after rank 0 set the run up")
    tok = tokenizer_for(cfg, splits, out)
    labels = labels_for(cfg, splits, out)
    return TASK_CLASSES[cfg.task](cfg, tok, splits, labels)
