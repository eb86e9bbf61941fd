"""The recipe registry and ``prepare``: fetch once, verify always.

``prepare(name)`` is a no-op (apart from re-checking sha256 sums) when ``DATA_DIR/NAME`` is
a complete preparation by the current version of the recipe. Otherwise it builds into a
hidden partial directory, with downloads in a separate temporary directory that is always
deleted, writes ``manifest.json`` last and renames the result into place.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import LayershareError
from ..outputs import check_out, describe
from . import brown, debian, espeak, espeak_asr, libreoffice, librivox, local, wordnet
from .fetch import say
from .store import (
    check_ready,
    default_data_dir,
    new_partial,
    publish,
    read_manifest,
    remove_stale_partials,
    write_manifest,
)
from .tokenizer import train_tokenizer


@dataclass(frozen=True)
class Recipe:
    """One data set: how to build it (``None`` for the user's own files) and read it."""

    name: str
    task: str                    # "lm", "translation", "summarisation", "classification", "asr"
    summary: str
    version: int = 0
    build: Callable[[Path, Path, bool], dict] | None = None
    read: Callable | None = None          # prepared dir (or, for local recipes, a config)
    train_texts: Callable | None = None   # prepared dir -> training texts for a tokenizer
    options: tuple[str, ...] = ()         # build keywords a user may set (recorded in source)

    @property
    def fetched(self) -> bool:
        return self.build is not None


def _english_test_paragraphs(data_dir: Path, progress: bool):
    """espeak-en's source: the English side of libreoffice-de-en's test split, and its manifest."""
    name = "libreoffice-de-en"
    return ([en for _, en in load_splits(name, data_dir, progress)["test"]],
            recipe_dir(name, data_dir) / "manifest.json")


def _libreoffice_splits(data_dir: Path, progress: bool):
    """espeak-asr's text source: the prepared libreoffice-de-en splits, and its manifest."""
    name = "libreoffice-de-en"
    return load_splits(name, data_dir, progress), recipe_dir(name, data_dir) / "manifest.json"


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("brown", "lm", "Brown corpus, 500 documents of 1961 American English (npm)",
           brown.VERSION, brown.build, brown.read, brown.train_texts),
    Recipe("libreoffice-de-en", "translation",
           "LibreOffice help paragraphs, German -> English (Debian)",
           libreoffice.VERSION, libreoffice.build, libreoffice.read, libreoffice.train_texts),
    Recipe("debian-summaries", "summarisation",
           "Debian package long descriptions -> their synopsis (apt's English lists)",
           debian.VERSION, debian.build, debian.read, debian.train_texts),
    Recipe("wordnet-supersense", "classification",
           "WordNet glosses -> 45 supersenses (Debian)",
           wordnet.VERSION, wordnet.build, wordnet.read, wordnet.train_texts),
    Recipe("espeak-en", "asr",
           "LibreOffice help sentences (held-out files) spoken by espeak-ng, 16 kHz (Debian)",
           espeak.VERSION, functools.partial(espeak.build, load_source=_english_test_paragraphs),
           espeak.read, espeak.train_texts),
    Recipe("espeak-asr", "asr",
           "a speech-recognition training corpus: LibreOffice help and Bible sentences spoken "
           "by espeak-ng in 6 accents, held-out text and voices for test (Debian)",
           espeak_asr.VERSION, functools.partial(espeak_asr.build,
                                                 load_source=_libreoffice_splits),
           espeak_asr.read, espeak_asr.train_texts, options=("hours",)),
    Recipe("librivox", "asr", "5 real LibriVox clips of pocketsphinx-testdata, 16 kHz (Debian)",
           librivox.VERSION, librivox.build, librivox.read, librivox.train_texts),
    Recipe("text", "lm", "your own text files, one per split", read=local.load_text_splits),
    Recipe("parallel", "translation", "your own line-aligned file pairs, one pair per split",
           read=local.load_parallel_splits),
)}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise LayershareError(f"unknown data recipe {name!r}; choose one of "
                              f"{', '.join(RECIPES)}") from None


def _fetched_recipe(name: str) -> Recipe:
    recipe = get_recipe(name)
    if not recipe.fetched:
        raise LayershareError(f"recipe {name!r} reads your own files and has nothing to "
                              f"prepare: use load_{name}_splits(config)")
    return recipe


def recipe_dir(name: str, data_dir: Path | None = None) -> Path:
    """Where ``prepare(name, data_dir)`` puts its files."""
    return Path(data_dir if data_dir is not None else default_data_dir()) / name


def prepare(name: str, data_dir: Path | None = None, progress: bool = True,
            force: bool = False, options: dict | None = None) -> Path:
    """Make ``DATA_DIR/NAME`` a complete, checksummed preparation; return its path.

    ``data_dir`` defaults to ``$LAYERSHARE_DATA`` or ``./data``. Needs the registries only
    when the directory is missing, incomplete, altered or from an older recipe version;
    ``force`` rebuilds regardless. Two processes preparing the same recipe at once both
    build, and the second to finish keeps the first one's result.
    """
    recipe = _fetched_recipe(name)
    if data_dir is not None and not str(data_dir).strip():
        raise LayershareError("the data directory is empty: give a path (default ./data)")
    final = recipe_dir(name, data_dir)
    if final.parent.exists() and not final.parent.is_dir():
        raise LayershareError(f"data directory {final.parent} is a file; choose another path")
    check_out(final, "data", flag="data directory")  # never replace what the user put there
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(options) - set(recipe.options)
    if unknown:
        raise LayershareError(f"recipe {name!r} takes no option {sorted(unknown)[0]!r}"
                              + (f"; it takes {', '.join(recipe.options)}" if recipe.options
                                 else ""))
    reason = check_ready(final, name, recipe.version) or _options_differ(final, options)
    if reason is None and not force:
        say(progress, f"{name}: ready in {final} (checksums verified)")
        return final
    say(progress, f"{name}: preparing in {final} ({'forced' if force else reason})")
    start = time.monotonic()
    remove_stale_partials(final.parent, name)
    partial = new_partial(final.parent, name)
    try:
        with tempfile.TemporaryDirectory(prefix=f"layershare-{name}-") as work:
            result = recipe.build(partial, Path(work), progress, **options)
        write_manifest(partial, name, recipe.version, result["source"], result["counts"])
        if not force and check_ready(final, name, recipe.version) is None:
            say(progress, f"{name}: another process finished first; keeping its result")
        else:
            publish(partial, final)
    except OSError as exc:  # a full disk, a read-only data directory: one line, nothing left
        raise LayershareError(f"cannot write {final}: {describe(exc)}") from None
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    say(progress, f"{name}: done in {time.monotonic() - start:.1f} s; "
                  f"{summarize(read_manifest(final)['counts'])}")
    return final


def _options_differ(final: Path, options: dict) -> str | None:
    """Why a ready preparation does not fit the asked ``options`` (None if it does)."""
    source = read_manifest(final).get("source", {})
    for key, value in options.items():
        if source.get(key) != value:
            return f"prepared with {key}={source.get(key)!r}, asked for {value!r}"
    return None


def summarize(counts: dict) -> str:
    """``train: 45,506 sentences, 919,594 tokens; valid: ...`` from manifest counts."""
    return "; ".join(f"{split}: " + ", ".join(f"{v:,} {k}" for k, v in c.items())
                     for split, c in counts.items())


def load_splits(name: str, data_dir: Path | None = None, progress: bool = True,
                fetch: bool = True) -> dict:
    """The splits of a fetched recipe, preparing it first if needed (see ``prepare``); with
    ``fetch=False`` only a preparation already made (:func:`prepared`)."""
    directory = prepare(name, data_dir, progress) if fetch else prepared(name, data_dir)
    return _fetched_recipe(name).read(directory)


def prepared(name: str, data_dir: Path | None = None) -> Path:
    """``DATA_DIR/NAME`` if it is a complete, verified preparation, else one line naming the
    command that makes it: nothing is fetched, run or written (what reading a finished run,
    or a DDP rank after rank 0 prepared, needs)."""
    final = recipe_dir(name, data_dir)
    reason = check_ready(final, name, _fetched_recipe(name).version)
    if reason is not None:
        raise LayershareError(f"{name}: {reason} in {final}; run `layershare data prepare "
                              f"{name}` first, or point $LAYERSHARE_DATA at the data store "
                              "that holds it")
    return final


def train_recipe_tokenizer(name: str, vocab_size: int, data_dir: Path | None = None,
                           out_path: Path | None = None, progress: bool = True) -> Path:
    """Fit a byte-level BPE on a recipe's training split (both languages for translation).

    Defaults to ``DATA_DIR/NAME/tokenizer-VOCAB/tokenizer.json``; rebuilt data deletes it.
    """
    recipe = _fetched_recipe(name)
    directory = prepare(name, data_dir, progress)
    out = Path(out_path) if out_path is not None else directory / f"tokenizer-{vocab_size}"
    say(progress, f"{name}: training a {vocab_size}-token byte-level BPE on train")
    return train_tokenizer(recipe.train_texts(directory), vocab_size, out)
