"""Calibration batches for a Whisper speech recogniser: log-mel features of real utterances.

A text model calibrates on token windows (cli/compress.py); an encoder-decoder speech model
reads audio. Each calibration utterance of the ``espeak-en`` *train* split (sentences the
test split never holds) goes through transformers' ``WhisperFeatureExtractor`` (80 log-mel
bins, 16 kHz, padded to Whisper's 30 s window), so the encoder sees exactly what it sees at
test time: one utterance followed by padding. The encoder always produces
``max_source_positions`` (1500) frames per clip, whatever the utterance's length, and every
one of them reaches the decoder's cross-attention; so the budget is counted in **encoder
frames**, ``ceil(frames / 1500)`` utterances, taken evenly spaced over the split (it is in
help-file order: the first N would come from a handful of files).

``compress()`` captures the inputs of a stack's first layer by running the model up to it
(compress/sequential.py): for the encoder, ``input_features`` alone are enough (the capture
stops before the decoder runs). For the decoder stack each batch also carries
``decoder_input_ids``: the reference transcript, teacher-forced, after Whisper's prompt
(``<|startoftranscript|>`` ... ``<|notimestamps|>``, as ``generate()`` starts) and closed by
``<|endoftext|>``; shorter transcripts are padded with ``<|endoftext|>`` to the batch's
longest (the decoder is causal, so a padding token never changes a real token's activations;
the few padding rows enter the decoder's Gram matrices as what the model sees after it
stopped).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..errors import LayershareError

SPEECH_CALIB = ("espeak-en",)  # speech recipes with a train split (librivox: 5 test clips only)


def is_speech_model(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "whisper"


def spread(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (all of them when there are no more)."""
    if n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def train_utterances(source: str, data_dir: Path | None = None) -> list:
    """The train split of a prepared speech recipe (see ``speech_splits``)."""
    utterances = speech_splits(source, data_dir)["train"]
    if not utterances:
        raise LayershareError(f"{source}: the train split holds no utterances")
    return utterances


def speech_splits(source: str, data_dir: Path | None = None) -> dict[str, list]:
    """The utterances per split of a prepared speech recipe; never prepares it (that needs
    the registries and espeak-ng): one clear line when it is missing."""
    from ..data import espeak
    from ..data.recipes import get_recipe, recipe_dir
    from ..data.store import check_ready

    if source not in SPEECH_CALIB:
        raise LayershareError(f"--calib {source}: a Whisper model calibrates on speech; choose "
                              f"{' or '.join(SPEECH_CALIB)} (or none for the data-free fit)")
    directory = recipe_dir(source, data_dir)
    reason = check_ready(directory, source, get_recipe(source).version)
    if reason is not None:
        raise LayershareError(f"{source} is not prepared in {directory} ({reason}): run "
                              f"layershare data prepare {source} first")
    return espeak.read(directory)


def frames_per_clip(model) -> int:
    return int(model.config.max_source_positions)


def decoder_prompt(model) -> list[int]:
    """The tokens ``generate()`` starts from: ``decoder_start_token_id`` and the forced
    prompt of ``generation_config`` (an English-only model: ``<|notimestamps|>``)."""
    gen = getattr(model, "generation_config", None)
    start = model.config.decoder_start_token_id
    prompt = [start]
    for _, token in sorted(getattr(gen, "forced_decoder_ids", None) or []):
        prompt.append(token)
    no_ts = getattr(gen, "no_timestamps_token_id", None)
    if no_ts is not None and no_ts not in prompt:
        prompt.append(no_ts)
    return prompt


def speech_batches(model, utterances: list, frames: int, batch_size: int = 8,
                   tokenizer=None) -> list[dict]:
    """Calibration batches of ``ceil(frames / 1500)`` utterances (evenly spaced), each
    ``{"input_features": (B, 80, 3000)}``; with ``tokenizer``, also the teacher-forced
    ``decoder_input_ids`` (module docstring)."""
    from ..formats.whisper import SAMPLING_RATE, feature_extractor

    if frames < 1 or batch_size < 1:
        raise LayershareError(f"--calib-tokens and --batch-size must be >= 1, got {frames}, "
                              f"{batch_size}")
    per_clip = frames_per_clip(model)
    wanted = math.ceil(frames / per_clip)
    if wanted > len(utterances):
        raise LayershareError(f"--calib-tokens {frames:,} asks for {wanted} utterances "
                              f"({per_clip} encoder frames each); the train split has "
                              f"{len(utterances)}")
    chosen = spread(utterances, wanted)
    long = [u for u in chosen if u.seconds > 30]
    if long:
        raise LayershareError(f"utterance {long[0].id} lasts {long[0].seconds:.1f} s; Whisper "
                              "reads at most 30 s")
    extractor = feature_extractor(model.config)
    dtype = next(model.parameters()).dtype
    prompt = decoder_prompt(model) if tokenizer is not None else None
    eos = model.config.eos_token_id
    batches = []
    for i in range(0, len(chosen), batch_size):
        group = chosen[i:i + batch_size]
        features = extractor([u.audio for u in group], sampling_rate=SAMPLING_RATE,
                             return_tensors="pt").input_features.to(dtype)
        batch = {"input_features": features}
        if prompt is not None:
            rows = [prompt + tokenizer(" " + u.text.strip(), add_special_tokens=False)["input_ids"]
                    + [eos] for u in group]
            limit = model.config.max_target_positions
            rows = [r[:limit] for r in rows]
            width = max(len(r) for r in rows)
            batch["decoder_input_ids"] = torch.tensor([r + [eos] * (width - len(r)) for r in rows])
        batches.append(batch)
    return batches
