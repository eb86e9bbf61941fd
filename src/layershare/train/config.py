"""Run configuration: nested dataclasses read from YAML, with dotted ``--set`` overrides.

One YAML file describes a whole run (data, model, training, sharing, evaluation)::

    data: {name: brown}
    model: {layers: 12, d_model: 512, heads: 8}
    train: {steps: 20000, batch_size: 64, seq_len: 256, lr: 6.0e-4}
    share: {method: residual, group_size: 4, rank: 64}
    dlt: {steps_per_action: 4}      # only with share.method: dlt


``--set train.lr=3e-4`` overrides one key; values are parsed with ``yaml.safe_load`` so
``--set share.diag=false`` is a bool and ``--set data.train=[a.de,a.en]`` a list. Every
unknown key is an error that names it: a typo in a config must not silently train the
default model for hours. The schema is the dataclasses below; each field's ``help`` is
what ``layershare train --help-config`` prints.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ..dlt.config import DLTConfig
from ..errors import LayershareError, first_line
from ..schema import check_value
from .distill_config import DistillConfig, check_distill

SHARE_METHODS = ("dense", "residual", "lowrank", "tied", "dlt")
ARCHS = ("reference", "gpt2")
SCHEDULES = ("cosine", "inverse-sqrt", "constant")
TASKS = {"brown": "lm", "text": "lm", "libreoffice-de-en": "translation",
         "parallel": "translation", "debian-summaries": "summarisation",
         "wordnet-supersense": "classification",
         "classes": "classification", "espeak-en": "asr", "espeak-asr": "asr"}


def _f(default, help: str):
    """A dataclass field with help text (lists get a factory, as dataclasses require)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    name: str = _f("brown", "recipe: brown | libreoffice-de-en | debian-summaries | "
                            "wordnet-supersense | espeak-asr (speech, CTC) | text | parallel | "
                            "classes (your own "
                            "label<TAB>text files)")
    dir: str | None = _f(None, "where recipes are prepared (default $LAYERSHARE_DATA or ./data)")
    train: Any = _f(None, "own files only: train split (a path; for parallel [src, tgt] "
                          "or {src:, tgt:})")
    valid: Any = _f(None, "own files only: valid split, as train")
    test: Any = _f(None, "own files only: test split, as train")
    tokenizer: str | None = _f(None, "an existing tokenizer.json; default: train a byte-level "
                                     "BPE of model.vocab_size tokens on the training split")


@dataclass
class ModelConfig:
    arch: str = _f("reference", "reference (layershare's own models) | gpt2 (LM only: a "
                                "transformers GPT2LMHeadModel of these sizes, from scratch)")
    layers: int = _f(4, "layers of the stack (translation, summarisation: of encoder and of "
                        "decoder)")
    encoder_layers: int | None = _f(None, "translation, summarisation: encoder layers "
                                          "(default: layers)")
    decoder_layers: int | None = _f(None, "translation, summarisation: decoder layers "
                                          "(default: layers)")
    d_model: int = _f(128, "width of the residual stream")
    heads: int = _f(4, "attention heads")
    ffn: int | None = _f(None, "hidden width of the feed-forward (default 4 * d_model)")
    dropout: float = _f(0.1, "dropout probability")
    pos: str = _f("learned", "positions: learned | rope")
    vocab_size: int = _f(8000, "tokenizer vocabulary size (BPE trained on the train split)")
    pool: str = _f("mean", "classification: mean | first")
    conv_channels: int = _f(64, "asr: channels of the two subsampling convolutions")
    init_from: str | None = _f(None, "a trained dense model to start from: a run directory "
                                     "or its model/ checkpoint, of this config's shapes "
                                     "(then share.init: mean transfers its weights, e.g. "
                                     "LightFormer's SVD transfer at step 0)")


@dataclass
class TrainConfig:
    steps: int = _f(1000, "optimizer steps")
    batch_size: int = _f(32, "GLOBAL batch in sequences per step (split across DDP ranks "
                             "and accumulation micro-batches)")
    grad_accum: int = _f(1, "micro-batches per step on each rank")
    seq_len: int = _f(128, "LM: tokens per sequence; translation/summarisation/"
                           "classification: longest sequence kept (longer ones are cut)")
    bucket_frames: int = _f(20000, "asr: padded input frames (10 ms each) per bucket of "
                                   "similar-length utterances; batch_size counts buckets")
    lr: float = _f(1e-3, "peak learning rate")
    min_lr: float = _f(0.0, "cosine: final learning rate")
    warmup: int = _f(100, "linear warm-up steps")
    schedule: str = _f("cosine", "cosine | inverse-sqrt | constant (after warm-up)")
    weight_decay: float = _f(0.1, "AdamW weight decay (matrices only, not biases/norms)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.95, "AdamW beta2")
    grad_clip: float = _f(1.0, "clip the global gradient norm to this (0 = off)")
    label_smoothing: float = _f(0.0, "translation, summarisation: label smoothing")
    eval_every: int = _f(200, "steps between validation runs")
    eval_batches: int = _f(0, "validation batches per run (0 = the whole valid split)")
    save_every: int = _f(200, "steps between 'last' checkpoints (resume points)")
    log_every: int = _f(10, "steps between metrics.jsonl lines")
    seed: int = _f(0, "seed of initialisation, dropout and data order")
    device: str = _f("auto", "auto | cpu | cuda")
    precision: str = _f("auto", "auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16")
    parallel: str = _f("ddp", "under torchrun: ddp (each rank a full replica) | fsdp (FSDP2: "
                              "parameters, gradients and AdamW state sharded; each group of "
                              "layers sharing tensors is one unit; sharded checkpoints)")


@dataclass
class ShareSection:
    method: str = _f("dense", "dense | residual (ResidualTransformer) | lowrank (LightFormer) "
                              "| tied (ALBERT) | dlt (dynamic layer tying: a Q-learning agent "
                              "ties and unties whole layers while training; settings in dlt.*)")
    group_size: int = _f(2, "layers per sharing group")
    rank: int = _f(64, "rank of the low-rank factors")
    strategy: Any = _f("sequence", "sequence | cycle | cycle-rev | sandwich | list of group ids")
    init: str = _f("scratch", "shared weights from the dense ones: scratch | mean | first | "
                              "stepwise (at transfer_at_step > 0 mean is the usual choice)")
    diag: bool | None = _f(None, "per-layer diagonal (default: on for residual, off otherwise)")
    matrices: list = _f(["q", "k", "v", "o", "ffn_in", "ffn_out"], "matrices to share")
    transfer_at_step: int = _f(0, "0: share from step 0. N > 0: train dense for N steps, then "
                                  "convert the trained weights (SVD transfer for lowrank = "
                                  "LightFormer) and fine-tune for the remaining steps")


@dataclass
class EvalConfig:
    batch_size: int = _f(32, "sequences per evaluation batch")
    beam_size: int = _f(4, "translation, summarisation: beam size for test BLEU / ROUGE "
                           "(1 = greedy)")
    max_len: int = _f(0, "translation, summarisation: longest output (0 = translation: "
                         "2 * source length + 10; summarisation: longest training summary)")
    test_limit: int = _f(0, "translation, summarisation: decode only the first N test pairs "
                            "(0 = all; results.json says when it is set)")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    share: ShareSection = field(default_factory=ShareSection)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dlt: DLTConfig = field(default_factory=DLTConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    @property
    def task(self) -> str:
        return TASKS[self.data.name]

    def to_dict(self) -> dict:
        return asdict(self)


def _from_dict(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise LayershareError(f"{where or 'config'}: expected a mapping, got {values!r}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in known:
            raise LayershareError(f"unknown config key {name!r}; known in "
                                  f"{where or 'the top level'}: {', '.join(known)}")
        sub = known[key].default_factory if known[key].default is MISSING else None
        if sub is not None and is_dataclass(sub):
            kwargs[key] = _from_dict(sub, value or {}, name)
        else:
            kwargs[key] = _coerce(known[key].type, value, name)
    return cls(**kwargs)


def _coerce(annotation: str, value, name: str):
    """The value if its type fits the field (a bool is a bool: ``share.diag: "no"`` is an
    error); float fields take ints and numeric strings (YAML 1.1 reads ``3e-4`` as a
    string)."""
    return check_value(annotation, value, name)


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


def check(cfg: RunConfig) -> RunConfig:
    """Values the dataclasses cannot check by type; a clear error beats a late crash."""
    if cfg.data.name not in TASKS:
        raise LayershareError(f"unknown data.name {cfg.data.name!r}; choose one of "
                              f"{', '.join(TASKS)}")
    if cfg.task == "asr" and cfg.distill.student is None and cfg.data.name != "espeak-asr":
        raise LayershareError(f"data.name {cfg.data.name} is a speech test set: train a "
                              "recogniser on data.name=espeak-asr, or distil a compressed "
                              "Whisper on it (layershare distill STUDENT --teacher "
                              f"whisper-tiny-en --data {cfg.data.name})")
    if cfg.share.method not in SHARE_METHODS:
        raise LayershareError(f"unknown share.method {cfg.share.method!r}; choose one of "
                              f"{', '.join(SHARE_METHODS)}")
    if cfg.train.schedule not in SCHEDULES:
        raise LayershareError(f"unknown train.schedule {cfg.train.schedule!r}; choose one of "
                              f"{', '.join(SCHEDULES)}")
    for section, names in (("train", ("steps", "batch_size", "grad_accum", "seq_len",
                                      "eval_every", "save_every", "log_every", "bucket_frames")),
                           ("model", ("layers", "d_model", "heads", "vocab_size",
                                      "conv_channels")),
                           ("share", ("group_size",)),  # rank: checked per method by ShareConfig
                           ("eval", ("batch_size", "beam_size"))):
        for name in names:
            value = getattr(getattr(cfg, section), name)
            if type(value) is not int or value < 1:
                raise LayershareError(f"{section}.{name} must be an integer >= 1, got {value!r}")
    t = cfg.train
    if not (isinstance(t.lr, (int, float)) and t.lr > 0):
        raise LayershareError(f"train.lr must be a positive number, got {t.lr!r}")
    for name, low, high in (("beta1", 0, 1), ("beta2", 0, 1), ("label_smoothing", 0, 1)):
        if not low <= getattr(t, name) < high:
            raise LayershareError(f"train.{name} must be in [{low}, {high}), got "
                                  f"{getattr(t, name)!r}")
    for name in ("weight_decay", "grad_clip", "min_lr"):
        if getattr(t, name) < 0:
            raise LayershareError(f"train.{name} must be >= 0, got {getattr(t, name)!r}")
    if not 0 <= cfg.model.dropout < 1:
        raise LayershareError(f"model.dropout must be in [0, 1), got {cfg.model.dropout!r}")
    if type(t.eval_batches) is not int or t.eval_batches < 0:
        raise LayershareError(f"train.eval_batches must be an integer >= 0, got "
                              f"{t.eval_batches!r}")
    if t.warmup < 0 or cfg.share.transfer_at_step < 0:
        raise LayershareError("train.warmup and share.transfer_at_step must be >= 0")
    if cfg.share.transfer_at_step >= t.steps:
        raise LayershareError(f"share.transfer_at_step ({cfg.share.transfer_at_step}) must be "
                              f"below train.steps ({t.steps})")
    if cfg.share.transfer_at_step and cfg.share.method in ("dense", "dlt"):
        raise LayershareError(f"share.transfer_at_step needs a static share.method "
                              f"(residual, lowrank, tied), not {cfg.share.method}")
    _check_model_and_dlt(cfg)
    check_distill(cfg)
    if t.precision not in ("auto", "fp32", "bf16") or t.device not in ("auto", "cpu", "cuda"):
        raise LayershareError("train.precision: auto|fp32|bf16; train.device: auto|cpu|cuda")
    if t.parallel not in ("ddp", "fsdp"):
        raise LayershareError(f"train.parallel: ddp | fsdp, got {t.parallel!r}")
    if t.parallel == "fsdp" and cfg.share.transfer_at_step:
        raise LayershareError("train.parallel=fsdp: share.transfer_at_step > 0 (convert a "
                              "trained dense model) is not supported; use ddp")
    own = cfg.data.name in ("text", "parallel", "classes")
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
    return cfg


def _check_model_and_dlt(cfg: RunConfig) -> None:
    """DLT ties the one layer stack of an LM or classifier; its keys only mean something with
    ``share.method: dlt`` (set without it, they would silently do nothing)."""
    if cfg.model.arch not in ARCHS:
        raise LayershareError(f"unknown model.arch {cfg.model.arch!r}; choose one of "
                              f"{', '.join(ARCHS)}")
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
    if type(cfg.dlt.target_network) is not bool:
        raise LayershareError(f"dlt.target_network must be true or false, "
                              f"got {cfg.dlt.target_network!r}")


def load_config(path: str | Path | None, overrides: list[str] = (),
                base_dir: Path | None = None) -> RunConfig:
    """A checked :class:`RunConfig` from a YAML file (or defaults) plus ``--set`` overrides.

    Relative ``data.*`` paths of own files are taken from the YAML file's folder, so a
    config and its data can move together.
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        tree = read_yaml(path)
        base_dir = base_dir or path.parent
    for assignment in overrides:
        set_dotted(tree, assignment)
    cfg = check(_from_dict(RunConfig, tree, ""))
    if base_dir is not None:
        for split in ("train", "valid", "test"):
            setattr(cfg.data, split, _rebase(getattr(cfg.data, split), Path(base_dir)))
    return cfg


def read_yaml(path: Path) -> dict:
    """A YAML file whose root is a mapping (``{}`` when empty), or a one-line error."""
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LayershareError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise LayershareError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
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
    return check(_from_dict(RunConfig, tree, ""))


def read_run_config(path: Path) -> RunConfig:
    """The checked config a run directory saved (``OUT/config.yaml``), or a one-line error
    that says how to proceed."""
    try:
        return config_from_dict(read_yaml(path))
    except LayershareError as exc:
        raise LayershareError(f"{path} is damaged ({exc}); restore it, or start afresh "
                              "with --overwrite") from None


def describe(cls=RunConfig, prefix: str = "") -> list[str]:
    """``key  default  help`` lines for every field (``--help-config``)."""
    lines = []
    for f in fields(cls):
        sub = f.default_factory if f.default is MISSING else None
        if sub is not None and is_dataclass(sub):
            lines += describe(sub, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not MISSING else f.default_factory()
            lines.append(f"{prefix + f.name:28s} {default!r:12s} {f.metadata.get('help', '')}")
    return lines
