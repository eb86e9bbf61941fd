"""The sections of a run config (``data:``, ``model:``, ``train:``, ``share:``, ``eval:``),
one pydantic model each; ``dlt:`` and ``distill:`` live with their features
(:mod:`layershare.dlt.config`, :mod:`.distill_config`).

Each field carries its type, its range and its help text (what ``layershare train
--help-config`` prints); rules across sections are :class:`.config.RunConfig`'s.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from pydantic import Field

from ..config import Init, ShareConfig
from ..configbase import Int, Number, Section, Str

DataName = Literal["brown", "text", "libreoffice-de-en", "parallel", "debian-summaries",
                   "wordnet-supersense", "classes", "espeak-en", "espeak-asr"]
#: the task of each data name (recipe or own-file format)
TASKS = {"brown": "lm", "text": "lm", "libreoffice-de-en": "translation",
         "parallel": "translation", "debian-summaries": "summarisation",
         "wordnet-supersense": "classification",
         "classes": "classification", "espeak-en": "asr", "espeak-asr": "asr"}
Schedule = Literal["cosine", "inverse-sqrt", "constant"]
SCHEDULES = get_args(Schedule)
RunMethod = Literal["dense", "residual", "lowrank", "tied", "dlt"]
SHARE_METHODS = get_args(RunMethod)
Arch = Literal["reference", "gpt2"]
ARCHS = get_args(Arch)
#: own files: a path; for parallel [src, tgt] or {src:, tgt:}
Split = Str | list[Str] | dict[Str, Str] | None


class DataConfig(Section):
    where: ClassVar[str] = "data"

    name: DataName = Field("brown", description=(
        "recipe: brown | libreoffice-de-en | debian-summaries | wordnet-supersense | "
        "espeak-asr (speech, CTC) | text | parallel | classes (your own label<TAB>text "
        "files)"))
    dir: Str | None = Field(None, description=(
        "where recipes are prepared (default $LAYERSHARE_DATA or ./data)"))
    train: Split = Field(None, description=(
        "own files only: train split (a path; for parallel [src, tgt] or {src:, tgt:})"))
    valid: Split = Field(None, description="own files only: valid split, as train")
    test: Split = Field(None, description="own files only: test split, as train")
    tokenizer: Str | None = Field(None, description=(
        "an existing tokenizer.json; default: train a byte-level BPE of model.vocab_size "
        "tokens on the training split"))


class ModelConfig(Section):
    where: ClassVar[str] = "model"

    arch: Arch = Field("reference", description=(
        "reference (layershare's own models) | gpt2 (LM only: a transformers "
        "GPT2LMHeadModel of these sizes, from scratch)"))
    layers: Int = Field(4, ge=1, description=(
        "layers of the stack (translation, summarisation: of encoder and of decoder)"))
    encoder_layers: Int | None = Field(None, ge=1, description=(
        "translation, summarisation: encoder layers (default: layers)"))
    decoder_layers: Int | None = Field(None, ge=1, description=(
        "translation, summarisation: decoder layers (default: layers)"))
    d_model: Int = Field(128, ge=1, description="width of the residual stream")
    heads: Int = Field(4, ge=1, description="attention heads")
    ffn: Int | None = Field(None, ge=1, description=(
        "hidden width of the feed-forward (default 4 * d_model)"))
    dropout: Number = Field(0.1, ge=0, lt=1, description="dropout probability")
    pos: Literal["learned", "rope"] = Field("learned", description="positions: learned | rope")
    vocab_size: Int = Field(8000, ge=1, description=(
        "tokenizer vocabulary size (BPE trained on the train split)"))
    pool: Literal["mean", "first"] = Field("mean", description="classification: mean | first")
    conv_channels: Int = Field(64, ge=1, description=(
        "asr: channels of the two subsampling convolutions"))
    init_from: Str | None = Field(None, description=(
        "a trained dense model to start from: a run directory or its model/ checkpoint, of "
        "this config's shapes (then share.init: mean transfers its weights, e.g. "
        "LightFormer's SVD transfer at step 0)"))


class TrainConfig(Section):
    where: ClassVar[str] = "train"

    steps: Int = Field(1000, ge=1, description="optimizer steps")
    batch_size: Int = Field(32, ge=1, description=(
        "GLOBAL batch in sequences per step (split across DDP ranks and accumulation "
        "micro-batches)"))
    grad_accum: Int = Field(1, ge=1, description="micro-batches per step on each rank")
    seq_len: Int = Field(128, ge=1, description=(
        "LM: tokens per sequence; translation/summarisation/classification: longest "
        "sequence kept (longer ones are cut)"))
    bucket_frames: Int = Field(20000, ge=1, description=(
        "asr: padded input frames (10 ms each) per bucket of similar-length utterances; "
        "batch_size counts buckets"))
    lr: Number = Field(1e-3, gt=0, description="peak learning rate")
    min_lr: Number = Field(0.0, ge=0, description="cosine: final learning rate")
    warmup: Int = Field(100, ge=0, description="linear warm-up steps")
    schedule: Schedule = Field("cosine", description=(
        "cosine | inverse-sqrt | constant (after warm-up)"))
    weight_decay: Number = Field(0.1, ge=0, description=(
        "AdamW weight decay (matrices only, not biases/norms)"))
    beta1: Number = Field(0.9, ge=0, lt=1, description="AdamW beta1")
    beta2: Number = Field(0.95, ge=0, lt=1, description="AdamW beta2")
    grad_clip: Number = Field(1.0, ge=0, description=(
        "clip the global gradient norm to this (0 = off)"))
    label_smoothing: Number = Field(0.0, ge=0, lt=1, description=(
        "translation, summarisation: label smoothing"))
    eval_every: Int = Field(200, ge=1, description="steps between validation runs")
    eval_batches: Int = Field(0, ge=0, description=(
        "validation batches per run (0 = the whole valid split)"))
    save_every: Int = Field(200, ge=1, description=(
        "steps between 'last' checkpoints (resume points)"))
    log_every: Int = Field(10, ge=1, description="steps between metrics.jsonl lines")
    seed: Int = Field(0, description="seed of initialisation, dropout and data order")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto | cpu | cuda")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description=(
        "auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16"))
    parallel: Literal["ddp", "fsdp"] = Field("ddp", description=(
        "under torchrun: ddp (each rank a full replica) | fsdp (FSDP2: parameters, "
        "gradients and AdamW state sharded; each group of layers sharing tensors is one "
        "unit; sharded checkpoints)"))


class ShareSection(ShareConfig):
    """ShareConfig's keys (so every convert option is a run option too), with the run's
    methods dense and dlt, ``init: scratch`` by default and ``transfer_at_step``."""

    where: ClassVar[str] = "share"

    method: RunMethod = Field("dense", description=(
        "dense | residual (ResidualTransformer) | lowrank (LightFormer) | tied (ALBERT) | "
        "dlt (dynamic layer tying: a Q-learning agent ties and unties whole layers while "
        "training; settings in dlt.*)"))
    init: Init = Field("scratch", description=(
        "shared weights from the dense ones: scratch | mean | first | stepwise (at "
        "transfer_at_step > 0, or with model.init_from, mean is the usual choice)"))
    transfer_at_step: Int = Field(0, ge=0, description=(
        "0: share from step 0. N > 0: train dense for N steps, then convert the trained "
        "weights (SVD transfer for lowrank = LightFormer) and fine-tune for the remaining "
        "steps"))

    def _default_diag(self) -> None:
        """``diag: null`` stays null in the run config (convert resolves it per method)."""

    def share_config(self) -> ShareConfig:
        """The ShareConfig ``convert`` gets: every key but the run's own."""
        return ShareConfig(**self.model_dump(exclude={"transfer_at_step"}))


class EvalConfig(Section):
    where: ClassVar[str] = "eval"

    batch_size: Int = Field(32, ge=1, description="sequences per evaluation batch")
    beam_size: Int = Field(4, ge=1, description=(
        "translation, summarisation: beam size for test BLEU / ROUGE (1 = greedy)"))
    max_len: Int = Field(0, ge=0, description=(
        "translation, summarisation: longest output (0 = translation: 2 * source length + "
        "10; summarisation: longest training summary)"))
    valid_decode: Int = Field(0, ge=0, description=(
        "translation, summarisation: at every evaluation also decode the first N valid pairs "
        "greedily and score them (valid BLEU / ROUGE-L), which then pick checkpoints/best "
        "(0 = no decoding: the valid loss picks it)"))
    test_limit: Int = Field(0, ge=0, description=(
        "translation, summarisation: decode only the first N test pairs (0 = all; "
        "results.json says when it is set)"))
