"""Run configuration: pydantic sections read from YAML, with dotted ``--set`` overrides.

One YAML file describes a whole run (data, model, training, sharing, evaluation)::

    data: {name: brown}
    model: {layers: 12, d_model: 512, heads: 8}
    train: {steps: 20000, batch_size: 64, seq_len: 256, lr: 6.0e-4}
    share: {method: residual, group_size: 4, rank: 64}
    dlt: {steps_per_action: 4}      # only with share.method: dlt


``--set train.lr=3e-4`` overrides one key; values are parsed with ``yaml.safe_load`` so
``--set share.diag=false`` is a bool and ``--set data.train=[a.de,a.en]`` a list. Every
unknown key is an error that names it: a typo in a config must not silently train the
default model for hours. The schema is the sections of :mod:`.sections` (``share:`` is
convert's own :class:`~layershare.config.ShareConfig` plus the run's keys), DLT's and
distillation's; each field's description is what ``layershare train --help-config``
prints. Rules that span sections are the ``model_validator`` of :class:`RunConfig`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, model_validator

from ..configbase import Section
from ..configbase import describe as describe_model
from ..dlt.config import DLTConfig
from ..errors import LayershareError, first_line
from ..paths import file_inside
from .distill_config import DistillConfig, check_distill
from .sections import (
    ARCHS,
    SCHEDULES,
    SHARE_METHODS,
    TASKS,
    DataConfig,
    EvalConfig,
    ModelConfig,
    ShareSection,
    TrainConfig,
)

__all__ = ["RunConfig", "load_config", "config_from_dict", "read_run_config", "describe",
           "set_dotted", "read_yaml", "TASKS", "ARCHS", "SCHEDULES", "SHARE_METHODS",
           "DataConfig", "ModelConfig", "TrainConfig", "ShareSection", "EvalConfig"]

#: data names of the user's own files (data.train, data.valid, data.test)
OWN = ("text", "parallel", "classes")


class RunConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig, description="the corpus")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the model's shape")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation")
    share: ShareSection = Field(default_factory=ShareSection, description="weight sharing")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation")
    dlt: DLTConfig = Field(default_factory=DLTConfig, description="dynamic layer tying")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="distillation")

    @model_validator(mode="after")
    def _rules(self):
        """Values no single section can check; a clear error beats a late crash."""
        _check_task(self)
        _check_transfer(self)
        _check_model_and_dlt(self)
        check_distill(self)
        _check_own_data(self)
        return self

    @property
    def task(self) -> str:
        return TASKS[self.data.name]


def _check_task(cfg: RunConfig) -> None:
    if cfg.task == "asr" and cfg.distill.student is None and cfg.data.name != "espeak-asr":
        raise LayershareError(f"data.name {cfg.data.name} is a speech test set: train a "
                              "recogniser on data.name=espeak-asr, or distil a compressed "
                              "Whisper on it (layershare distill STUDENT --teacher "
                              f"whisper-tiny-en --data {cfg.data.name})")


def _check_transfer(cfg: RunConfig) -> None:
    """``transfer_at_step`` converts a dense model trained so far: it needs a static method,
    steps after it, and ddp (FSDP's sharded units are fixed before training)."""
    at = cfg.share.transfer_at_step
    if at >= cfg.train.steps:
        raise LayershareError(f"share.transfer_at_step ({at}) must be below train.steps "
                              f"({cfg.train.steps})")
    if at and cfg.share.method in ("dense", "dlt"):
        raise LayershareError(f"share.transfer_at_step needs a static share.method "
                              f"(residual, lowrank, tied), not {cfg.share.method}")
    if at and cfg.train.parallel == "fsdp":
        raise LayershareError("train.parallel=fsdp: share.transfer_at_step > 0 (convert a "
                              "trained dense model) is not supported; use ddp")


def _check_model_and_dlt(cfg: RunConfig) -> None:
    """DLT ties the one layer stack of an LM or classifier; its keys only mean something with
    ``share.method: dlt`` (set without it, they would silently do nothing)."""
    if cfg.model.arch == "gpt2" and cfg.task != "lm":
        raise LayershareError(f"model.arch=gpt2 is a language model; data.name={cfg.data.name} "
                              f"is a {cfg.task} task")
    if cfg.share.method != "dlt":
        if cfg.dlt != DLTConfig():
            raise LayershareError("dlt.* keys are set but share.method is "
                                  f"{cfg.share.method!r}: use share.method=dlt")
        return
    if cfg.task in ("translation", "summarisation"):
        raise LayershareError("share.method=dlt ties one layer stack: it supports the lm and "
                              f"classification tasks, not {cfg.task} (encoder + decoder)")


def _check_own_data(cfg: RunConfig) -> None:
    """Own files need all three splits (distillation on text: one file is split too); a
    recipe brings its own, so paths beside it would be silently ignored."""
    own = cfg.data.name in OWN
    given = [s for s in ("train", "valid", "test") if getattr(cfg.data, s) is not None]
    if cfg.distill.student is not None and cfg.data.name == "text":
        if cfg.data.train is None or len(given) == 2:  # one file is split (train/distill.py)
            raise LayershareError("distillation on data.name=text needs data.train (one "
                                  "file, split 90/5/5 by line order) or all three splits")
    elif own and len(given) != 3:
        raise LayershareError(f"data.name={cfg.data.name} needs data.train, data.valid and "
                              "data.test (your own files)")
    if not own and given:
        raise LayershareError(f"data.{given[0]} is only for your own files (data.name text, "
                              f"parallel or classes), not the {cfg.data.name} recipe")


def set_dotted(tree: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` to a nested dict (value parsed by ``yaml.safe_load``)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise LayershareError(f"--set expects key=value, got {assignment!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise LayershareError(f"--set {key}: cannot parse {text!r} ({exc})") from None
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise LayershareError(f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None, overrides: list[str] = (),
                base_dir: Path | None = None) -> RunConfig:
    """A checked :class:`RunConfig` from a YAML file (or defaults) plus ``--set`` overrides.

    Relative ``data.*`` paths of own files (and ``data.tokenizer``) are taken from the YAML
    file's folder, so a config and its data can move together.
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        tree = read_yaml(path)
        base_dir = base_dir or path.parent
    for assignment in overrides:
        set_dotted(tree, assignment)
    cfg = config_from_dict(tree)
    if base_dir is not None:
        for key in ("train", "valid", "test", "tokenizer"):
            setattr(cfg.data, key, _rebase(getattr(cfg.data, key), Path(base_dir)))
    return cfg


def read_yaml(path: Path) -> dict:
    """A YAML file whose root is a mapping (``{}`` when empty), or a one-line error."""
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LayershareError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LayershareError(f"{path}: not UTF-8 text "
                              f"({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise LayershareError(f"{path}: not valid YAML ({where}{problem})") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise LayershareError(f"{path}: the top level must be a mapping of sections "
                              f"(data:, model:, train: ...), got a {type(tree).__name__}")
    return tree


def _rebase(value, base: Path):
    if isinstance(value, str):
        return value if Path(value).expanduser().is_absolute() else str(base / value)
    if isinstance(value, list):
        return [_rebase(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _rebase(v, base) for k, v in value.items()}
    return value


def config_from_dict(tree: dict) -> RunConfig:
    """The inverse of ``RunConfig.to_dict`` (for a run directory's saved config)."""
    return RunConfig.from_dict(tree)


def read_run_config(path: Path) -> RunConfig:
    """The checked config a run directory saved (``OUT/config.yaml``), or a one-line error
    that says how to proceed."""
    try:
        return config_from_dict(read_yaml(path))
    except LayershareError as exc:
        raise LayershareError(f"{path} is damaged ({exc}); restore it, or start afresh "
                              "with --overwrite") from None


def confine_to_run(cfg: RunConfig, run: Path, read_data: bool = True) -> RunConfig:
    """A run directory's saved ``cfg`` as ``eval``, ``generate`` and ``translate`` read it.

    A run directory may come from anyone, and its ``config.yaml`` must not lead layershare
    outside it: a recipe is read from the user's own data store ($LAYERSHARE_DATA or
    ./data), never from the saved ``data.dir``; the run's own data files (``data.train``,
    ``valid``, ``test`` of the text, parallel and classes recipes) must lie inside the run
    directory, else one line; ``data.tokenizer`` is dropped (the run's ``tokenizer.json`` is
    what it was trained with). Without ``read_data`` (``generate``, ``translate``) the data
    files are dropped instead: they are not read, so not checked."""
    cfg = cfg.model_copy(deep=True)
    cfg.data.dir, cfg.data.tokenizer = None, None
    for split in ("train", "valid", "test"):
        value = getattr(cfg.data, split)
        setattr(cfg.data, split, _inside(value, Path(run), f"data.{split}") if read_data else None)
    return cfg


def _inside(value, run: Path, key: str):
    """``value`` (a path, or a list / table of them) with every path a regular file inside
    ``run`` (relative ones taken from it)."""
    if isinstance(value, list):
        return [_inside(v, run, key) for v in value]
    if isinstance(value, dict):
        return {k: _inside(v, run, key) for k, v in value.items()}
    if not isinstance(value, str):
        return value
    base, target = run.resolve(), (run / Path(value).expanduser()).resolve()
    if base not in target.parents:
        raise LayershareError(
            f"{run / 'config.yaml'}: {key} names {value!r}, outside the run directory; a "
            "run directory is read only inside itself (a run you made: eval --trust-config, "
            "or copy the data into it)")
    return str(file_inside(base, target.relative_to(base), key))


def describe(cls=RunConfig, prefix: str = "") -> list[str]:
    """``key  default  help`` lines for every key (``--help-config``), from the models."""
    return describe_model(cls, prefix)
