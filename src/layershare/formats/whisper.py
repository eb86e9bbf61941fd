"""A CTranslate2 Whisper (``WhisperSpec``) as transformers' ``WhisperForConditionalGeneration``.

CTranslate2's converter (``python/ctranslate2/converters/transformers.py``, ``WhisperLoader``)
stores each attention's projections fused: self-attention ``linear_0`` is ``[q; k; v]`` and
cross-attention ``linear_1`` is ``[k; v]``, with a zero bias block where Whisper's ``k_proj``
has none. Splitting them back is exact. (A non-zero key bias ``b`` would add ``q . b`` to every
logit of a query, which softmax ignores; it is still refused, as a sign of a foreign model.)

The transformers config comes from the file itself (layers, widths and heads from the array
shapes and the ``num_heads`` scalars; vocabulary and mel bins from the embedding and the first
convolution) plus the Whisper constants the file cannot carry (special token ids, read from
``tokenizer.json``, and the 16 kHz / 30 s front end). Every CTranslate2 variable is consumed
exactly once and every transformers parameter is written exactly once, else the mapping fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import LayershareError
from ..paths import file_inside
from .ctranslate2 import CT2Model, read_model

SAMPLING_RATE = 16_000
# Model options CTranslate2 stores as scalars, with the value the Whisper architecture needs
# (None: any value; only used by CTranslate2's own decoding).
_OPTIONS = {"decoder/activation": 3,            # ActivationType::GELU (erf)
            "decoder/alibi": 0, "decoder/pre_norm": 1, "decoder/scale_embeddings": 0,
            "decoder/start_from_zero_embedding": 0, "decoder/alignment_heads": None,
            "decoder/alignment_layer": None, "decoder/num_heads": None,
            "encoder/num_heads": None}
_TOKENS = {"eos": "<|endoftext|>", "sot": "<|startoftranscript|>",
           "no_timestamps": "<|notimestamps|>", "transcribe": "<|transcribe|>",
           "translate": "<|translate|>", "prev": "<|startofprev|>", "lm": "<|startoflm|>"}


def is_ctranslate2_dir(path: Path) -> bool:
    """A directory with ``model.bin`` and a ``config.json`` that is not transformers'."""
    path = Path(path)
    if not (path.is_dir() and (path / "model.bin").is_file()):
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # model.bin alone is a CTranslate2 model
    return not (isinstance(config, dict) and "model_type" in config)


def special_tokens(directory: Path) -> dict[str, int]:
    """Ids of Whisper's special tokens, from the ``tokenizer.json`` beside the model."""
    path = file_inside(directory, "tokenizer.json", "tokenizer")  # not a link out of it
    try:
        added = json.loads(path.read_text(encoding="utf-8"))["added_tokens"]
        ids = {t["content"]: int(t["id"]) for t in added}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LayershareError(f"{directory}: no readable tokenizer.json with Whisper's special "
                              f"tokens ({type(exc).__name__})") from None
    missing = [tok for tok in _TOKENS.values() if tok not in ids]
    if missing:
        raise LayershareError(f"{directory}/tokenizer.json lacks Whisper tokens {missing}")
    return {key: ids[tok] for key, tok in _TOKENS.items()}


def _layers(ct2: CT2Model, stack: str) -> int:
    n = 0
    while f"{stack}/layer_{n}/ffn/linear_0/weight" in ct2.variables:
        n += 1
    return n


def whisper_config(ct2: CT2Model, tokens: dict[str, int], extra: dict | None = None):
    """The ``WhisperConfig`` of a CTranslate2 Whisper (see the module docstring)."""
    from transformers import WhisperConfig

    if ct2.spec != "WhisperSpec":
        raise LayershareError(f"CTranslate2 model is a {ct2.spec or 'unnamed spec'}; layershare "
                              "reads WhisperSpec only")
    for name, want in _OPTIONS.items():
        if name not in ct2.variables:
            raise LayershareError(f"CTranslate2 Whisper lacks the option {name}")
        if want is not None and ct2.variables[name].scalar() != want:
            raise LayershareError(f"CTranslate2 Whisper has {name}={ct2.variables[name].scalar()}"
                                  f"; transformers' Whisper needs {want}")
    for name, rank in _RANKS.items():
        if ct2.get(name).rank != rank:
            raise LayershareError(f"CTranslate2 Whisper: {name} has shape {ct2.get(name).shape}, "
                                  f"a rank-{rank} array expected")
    vocab, d_model = ct2.get("decoder/embeddings/weight").shape
    for stack in ("encoder", "decoder"):
        heads = ct2.get(f"{stack}/num_heads").scalar()
        if not (isinstance(heads, int) and heads >= 1 and d_model % heads == 0):
            raise LayershareError(f"CTranslate2 Whisper: {stack}/num_heads is {heads}; a "
                                  f"positive divisor of the width {d_model} is needed")
    extra = extra or {}
    is_english = vocab < 51865  # multilingual checkpoints have one more token (<|yue|> etc.)
    return WhisperConfig(
        vocab_size=vocab, d_model=d_model,
        num_mel_bins=ct2.get("encoder/conv1/weight").shape[1],
        encoder_layers=_layers(ct2, "encoder"), decoder_layers=_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2.get("encoder/num_heads").scalar()),
        decoder_attention_heads=int(ct2.get("decoder/num_heads").scalar()),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        activation_function="gelu", scale_embedding=False, tie_word_embeddings=True,
        bos_token_id=tokens["sot"], eos_token_id=tokens["eos"], pad_token_id=tokens["eos"],
        decoder_start_token_id=tokens["sot"],
        suppress_tokens=list(extra.get("suppress_ids", [])),
        begin_suppress_tokens=list(extra.get("suppress_ids_begin", [220, tokens["eos"]])),
        architectures=["WhisperForConditionalGeneration"],
        # not read by transformers: what generation_config() needs after a save/load
        layershare_whisper={"tokens": tokens, "english_only": is_english,
                            "alignment_heads": extra.get("alignment_heads")},
    )


# Arrays whose shapes the config is read from, with their ranks.
_RANKS = {"decoder/embeddings/weight": 2, "encoder/conv1/weight": 3,
          "encoder/layer_0/ffn/linear_0/weight": 2, "decoder/layer_0/ffn/linear_0/weight": 2,
          "encoder/position_encodings/encodings": 2, "decoder/position_encodings/encodings": 2}


def _layer_map(ct2_prefix: str, hf_prefix: str, cross: bool) -> list:
    """(ct2 name, hf names, split) for one layer; ``split`` cuts fused rows into equal parts."""
    out = []

    def norm(ct2: str, hf: str):
        out.append((f"{ct2_prefix}/{ct2}/gamma", [f"{hf_prefix}.{hf}.weight"], 1))
        out.append((f"{ct2_prefix}/{ct2}/beta", [f"{hf_prefix}.{hf}.bias"], 1))

    def linear(ct2: str, hfs: list[str]):
        out.append((f"{ct2_prefix}/{ct2}/weight", [f"{hf_prefix}.{h}.weight" for h in hfs],
                    len(hfs)))
        out.append((f"{ct2_prefix}/{ct2}/bias", [f"{hf_prefix}.{h}.bias" for h in hfs], len(hfs)))

    sa = "self_attn"
    norm("self_attention/layer_norm", "self_attn_layer_norm")
    linear("self_attention/linear_0", [f"{sa}.q_proj", f"{sa}.k_proj", f"{sa}.v_proj"])
    linear("self_attention/linear_1", [f"{sa}.out_proj"])
    if cross:
        ca = "encoder_attn"
        norm("attention/layer_norm", "encoder_attn_layer_norm")
        linear("attention/linear_0", [f"{ca}.q_proj"])
        linear("attention/linear_1", [f"{ca}.k_proj", f"{ca}.v_proj"])
        linear("attention/linear_2", [f"{ca}.out_proj"])
    norm("ffn/layer_norm", "final_layer_norm")
    linear("ffn/linear_0", ["fc1"])
    linear("ffn/linear_1", ["fc2"])
    return out


def name_map(config) -> list:
    """Every (CTranslate2 name, transformers names, split) of a Whisper of ``config``'s size."""
    out = [("encoder/conv1/weight", ["model.encoder.conv1.weight"], 1),
           ("encoder/conv1/bias", ["model.encoder.conv1.bias"], 1),
           ("encoder/conv2/weight", ["model.encoder.conv2.weight"], 1),
           ("encoder/conv2/bias", ["model.encoder.conv2.bias"], 1),
           ("encoder/position_encodings/encodings", ["model.encoder.embed_positions.weight"], 1),
           ("encoder/layer_norm/gamma", ["model.encoder.layer_norm.weight"], 1),
           ("encoder/layer_norm/beta", ["model.encoder.layer_norm.bias"], 1),
           ("decoder/embeddings/weight", ["model.decoder.embed_tokens.weight"], 1),
           ("decoder/position_encodings/encodings", ["model.decoder.embed_positions.weight"], 1),
           ("decoder/layer_norm/gamma", ["model.decoder.layer_norm.weight"], 1),
           ("decoder/layer_norm/beta", ["model.decoder.layer_norm.bias"], 1)]
    for i in range(config.encoder_layers):
        out += _layer_map(f"encoder/layer_{i}", f"model.encoder.layers.{i}", cross=False)
    for i in range(config.decoder_layers):
        out += _layer_map(f"decoder/layer_{i}", f"model.decoder.layers.{i}", cross=True)
    return out


def state_dict(ct2: CT2Model, config, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """The transformers state dict (without the tied ``proj_out.weight``) of ``ct2``.

    Raises when a variable is left unused, missing, or a fused key bias is non-zero.
    """
    state: dict[str, torch.Tensor] = {}
    used = set(_OPTIONS)
    for ct2_name, hf_names, parts in name_map(config):
        value = _dequantized(ct2, ct2_name)
        used.add(ct2_name)
        if parts > 1 and (value.ndim == 0 or value.shape[0] % parts):
            raise LayershareError(f"CTranslate2 Whisper: {ct2_name} has shape {value.shape}, "
                                  f"which does not split into {parts} fused projections")
        chunks = np.split(value, parts, axis=0) if parts > 1 else [value]
        for hf_name, chunk in zip(hf_names, chunks):
            if hf_name.endswith("k_proj.bias"):
                if np.any(chunk != 0):
                    raise LayershareError(f"{ct2_name}: the key projection has a non-zero bias; "
                                          "this is not an OpenAI Whisper")
                continue
            state[hf_name] = torch.from_numpy(np.array(chunk, dtype=np.float32)).to(dtype)
    head = ct2.aliases.get("decoder/projection/weight", "decoder/projection/weight")
    if head != "decoder/embeddings/weight":
        raise LayershareError("CTranslate2 Whisper with an untied output projection: not "
                              "supported (transformers' Whisper ties it to the embeddings)")
    used |= {n + "_scale" for n in used if n + "_scale" in ct2.variables}
    left = sorted(set(ct2.variables) - used)
    if left:
        raise LayershareError(f"CTranslate2 Whisper has variables layershare does not map: "
                              f"{left[:5]}")
    return state


def _dequantized(ct2: CT2Model, name: str) -> np.ndarray:
    """A variable as float32; int8 rows are divided by their ``_scale`` (CTranslate2 stores
    ``round(w * scale)`` with ``scale = 127 / max|row|``), int16 by its scalar scale."""
    var = ct2.get(name)
    value = var.array().astype(np.float32)
    if var.dtype in ("int8", "int16"):
        if name + "_scale" not in ct2.variables:
            raise LayershareError(f"{name}: {var.dtype} weights without a {name}_scale")
        scale = ct2.get(name + "_scale").array().astype(np.float32)
        value = value / (scale.reshape(-1, 1) if scale.ndim == 1 else scale)
    return value


def from_ctranslate2(directory: str | os.PathLike, dtype=torch.float32):
    """transformers' ``WhisperForConditionalGeneration`` from a CTranslate2 Whisper directory
    (``model.bin``, ``config.json``, ``tokenizer.json``), in eval mode, ``generation_config``
    set for English transcription without timestamps."""
    from transformers import WhisperForConditionalGeneration

    directory = Path(directory)
    ct2 = read_model(directory / "model.bin")
    try:
        extra = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        extra = {}
    except (OSError, ValueError) as exc:
        raise LayershareError(f"{directory}/config.json: unreadable ({exc})") from None
    config = whisper_config(ct2, special_tokens(directory), extra)
    weights = state_dict(ct2, config, dtype)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    expected = {k for k in model.state_dict() if k != "proj_out.weight"}
    if set(weights) != expected:
        raise LayershareError(f"{directory}: mapping mismatch (missing "
                              f"{sorted(expected - set(weights))[:3]}, unexpected "
                              f"{sorted(set(weights) - expected)[:3]})")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, value in weights.items():  # the file's declared shapes, against the config's
        if tuple(value.shape) != shapes[name]:
            raise LayershareError(f"{directory}: {name} has shape {tuple(value.shape)} in "
                                  f"model.bin, the Whisper its other arrays describe needs "
                                  f"{shapes[name]}")
    model.load_state_dict(weights, strict=False, assign=True)
    model.tie_weights()
    model.generation_config = generation_config(config)
    return model.eval()


def generation_config(config):
    """Whisper's generation settings for a model of ``config`` (English, no timestamps).

    Rebuilt from the config alone, so a saved and reloaded checkpoint decodes the same way.
    """
    from transformers import GenerationConfig

    info = getattr(config, "layershare_whisper", None)
    if not info:
        raise LayershareError("not a Whisper from layershare.formats.whisper (its config lacks "
                              "layershare_whisper)")
    tokens = info["tokens"]
    gen = GenerationConfig(
        decoder_start_token_id=tokens["sot"], bos_token_id=tokens["sot"],
        eos_token_id=tokens["eos"], pad_token_id=tokens["eos"],
        max_length=config.max_target_positions, suppress_tokens=list(config.suppress_tokens or []),
        begin_suppress_tokens=list(config.begin_suppress_tokens or []),
        no_timestamps_token_id=tokens["no_timestamps"], is_multilingual=not info["english_only"],
        max_initial_timestamp_index=50, return_timestamps=False,
        prev_sot_token_id=tokens["prev"], forced_decoder_ids=None)
    if info.get("alignment_heads"):
        gen.alignment_heads = [list(h) for h in info["alignment_heads"]]
    if not info["english_only"]:
        gen.task_to_id = {"transcribe": tokens["transcribe"], "translate": tokens["translate"]}
    return gen


def tokenizer(directory: str | os.PathLike):
    """The fast Whisper tokenizer from the ``tokenizer.json`` of ``directory``."""
    from transformers import WhisperTokenizerFast

    directory = Path(directory)
    special_tokens(directory)  # a clear error when the file is missing or not Whisper's
    path = file_inside(directory, "tokenizer.json", "tokenizer")
    return WhisperTokenizerFast(tokenizer_file=str(path),
                                unk_token="<|endoftext|>", bos_token="<|endoftext|>",
                                eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                predict_timestamps=False)


def feature_extractor(config=None):
    """transformers' log-mel front end: 16 kHz, 25 ms windows every 10 ms, 30 s padded."""
    from transformers import WhisperFeatureExtractor

    mels = getattr(config, "num_mel_bins", 80) if config is not None else 80
    return WhisperFeatureExtractor(feature_size=mels, sampling_rate=SAMPLING_RATE)
