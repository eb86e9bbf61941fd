"""SpeechEncoder: a CTC speech recogniser over characters, for training from scratch.

The setting of ResidualTransformer (Wang & Li, ICASSP 2024): a Transformer speech encoder
for always-on devices, trained from scratch with its layers' weights shared. The pieces:

* input: 80-bin log-mel frames every 10 ms (:func:`layershare.data.audio.log_mel`), each
  utterance normalised to zero mean and unit variance per bin (so a recording's level and
  channel do not matter), then SpecAugment in training (Park et al., 2019: ``freq_masks``
  bands of up to ``freq_width`` bins and ``time_masks`` spans of up to ``time_width``
  frames, at most a fifth of the utterance each, set to zero), drawn from torch's global
  generator, which the trainer checkpoints, so a resumed run masks as an unbroken one;
* subsampling: two 3x3 convolutions of stride 2 with ReLU (4x fewer frames, 40 ms each; the
  front end of ESPnet's and most Transformer/Conformer recognisers), then a linear map to
  ``d_model``;
* ``encoder``: the same pre-norm :class:`~layershare.models.blocks.Stack` as every reference
  model, unmasked in time (bidirectional), padded frames masked out of attention, rotary or
  learned positions; ``encoder.layers`` is the stack ``layershare.convert`` rewrites;
* a linear CTC head over :data:`CHARS` (Graves et al., 2006) with index 0 the blank.

:func:`greedy_decode` takes the best symbol per frame, merges repeats and drops blanks;
:func:`beam_decode` is CTC prefix beam search without a language model.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LayershareError
from .blocks import Stack, TransformerConfig, rope_table, stack_spec

BLANK = "_"
CHARS = (BLANK, " ", "'") + tuple("abcdefghijklmnopqrstuvwxyz")
_INDEX = {c: i for i, c in enumerate(CHARS)}


def normalize_text(text: str) -> str:
    """What the recogniser is asked to write: lower case letters, apostrophes and single
    spaces (hyphens and slashes become spaces; other punctuation and digits are dropped)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[-/\u2014\u2013]", " ", text)
    text = re.sub(r"[^a-z' ]", "", text)
    return " ".join(text.split())


def encode_text(text: str) -> list[int]:
    """Symbol ids of the normalised ``text`` (never the blank)."""
    return [_INDEX[c] for c in normalize_text(text)]


def decode_ids(ids) -> str:
    """The text of a sequence of symbol ids (blanks dropped, nothing merged)."""
    return "".join(CHARS[i] for i in ids if i != 0)


@dataclass
class SpeechEncoderConfig(TransformerConfig):
    vocab_size: int = field(default=len(CHARS), metadata={"help": "CTC symbols incl. blank"})
    n_layers: int = field(default=12, metadata={"help": "encoder layers"})
    n_mels: int = field(default=80, metadata={"help": "log-mel bins of the input"})
    conv_channels: int = field(default=64, metadata={"help": "channels of the subsampling convs"})
    max_len: int = field(default=1500, metadata={
        "help": "longest input in subsampled frames (learned positions only; 1500 = 60 s)"})
    pos: str = field(default="rope", metadata={"help": "positions: rope | learned"})
    freq_masks: int = field(default=2, metadata={"help": "SpecAugment frequency masks"})
    freq_width: int = field(default=15, metadata={"help": "widest frequency mask (bins)"})
    time_masks: int = field(default=2, metadata={"help": "SpecAugment time masks"})
    time_width: int = field(default=40, metadata={"help": "widest time mask (frames)"})

    def __post_init__(self):
        if self.vocab_size != len(CHARS):
            raise LayershareError(f"SpeechEncoder writes {len(CHARS)} CTC symbols; "
                                  f"vocab_size must be {len(CHARS)}, got {self.vocab_size}")
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise LayershareError(f"{name} must be an integer >= 0, got {value!r}")
        super().__post_init__()


def subsampled(frames: Tensor | int):
    """Frames left after the two stride-2 3x3 convolutions (no padding)."""
    return ((frames - 1) // 2 - 1) // 2


class SpeechEncoder(nn.Module):
    """Log-mel frames -> per-frame CTC log-probabilities over :data:`CHARS`."""

    layershare_stacks = (stack_spec("encoder"),)

    def __init__(self, config: SpeechEncoderConfig):
        super().__init__()
        self.config = c = config
        self.subsample = nn.Sequential(
            nn.Conv2d(1, c.conv_channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(c.conv_channels, c.conv_channels, 3, stride=2), nn.ReLU())
        self.project = nn.Linear(c.conv_channels * subsampled(c.n_mels), c.d_model)
        self.positions = nn.Embedding(c.max_len, c.d_model) if c.pos == "learned" else None
        self.drop = nn.Dropout(c.dropout)
        self.encoder = Stack(c, c.n_layers)
        self.head = nn.Linear(c.d_model, len(CHARS))

    def normalize(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """Per-utterance, per-bin mean and variance normalisation over the real frames."""
        valid = (torch.arange(feats.shape[1], device=feats.device)[None] < lengths[:, None])
        w = valid[..., None].float()
        n = w.sum(1, keepdim=True).clamp_min(1)
        mean = (feats * w).sum(1, keepdim=True) / n
        var = ((feats - mean).pow(2) * w).sum(1, keepdim=True) / n
        return (feats - mean) / (var + 1e-5).sqrt() * w

    def spec_augment(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """Zero random frequency bands and time spans of each utterance (training only)."""
        c, out = self.config, feats.clone()
        for b in range(feats.shape[0]):
            n = int(lengths[b])
            for _ in range(c.freq_masks):
                width = int(torch.randint(0, c.freq_width + 1, ()))
                start = int(torch.randint(0, max(c.n_mels - width, 0) + 1, ()))
                out[b, :, start:start + width] = 0
            for _ in range(c.time_masks):
                width = int(torch.randint(0, min(c.time_width, n // 5) + 1, ()))
                start = int(torch.randint(0, max(n - width, 0) + 1, ()))
                out[b, start:start + width] = 0
        return out

    def forward(self, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``feats`` (batch, frames, n_mels), ``lengths`` (batch,) real frames -> CTC
        log-probabilities (batch, frames / 4, symbols) and their lengths."""
        if subsampled(feats.shape[1]) < 1:
            raise LayershareError(f"an utterance of {feats.shape[1]} frames is too short: "
                                  "the recogniser needs at least 7 (70 ms)")
        feats = self.normalize(feats.float(), lengths)
        if self.training and (self.config.freq_masks or self.config.time_masks):
            feats = self.spec_augment(feats, lengths)
        x = self.subsample(feats[:, None])                      # (B, C, T/4, mels/4)
        x = self.project(x.permute(0, 2, 1, 3).flatten(2))     # (B, T/4, d_model)
        out_lengths = subsampled(lengths).clamp_min(1)
        t = x.shape[1]
        positions = torch.arange(t, device=x.device)
        rope = None
        if self.positions is not None:
            if t > self.config.max_len:
                raise LayershareError(f"an utterance of {t} subsampled frames is longer than "
                                      f"max_len={self.config.max_len}")
            x = x + self.positions(positions)
        else:
            rope = rope_table(positions, self.config.d_model // self.config.n_heads,
                              self.config.rope_base)
        mask = (positions[None] < out_lengths[:, None])[:, None, None, :]
        x, _ = self.encoder(self.drop(x), rope=rope, mask=mask)
        return F.log_softmax(self.head(x).float(), dim=-1), out_lengths

    def loss(self, feats: Tensor, lengths: Tensor, targets: Tensor,
             target_lengths: Tensor) -> Tensor:
        """CTC loss per target character (summed over the batch, divided by its characters).
        ``targets``: the batch's symbol ids one utterance after another."""
        log_probs, out_lengths = self(feats, lengths)
        total = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths,
                           blank=0, reduction="sum", zero_infinity=True)
        return total / target_lengths.sum().clamp_min(1)

    def layershare_base(self) -> dict:
        """How ``layershare.load`` rebuilds this model (see checkpoint.build_base)."""
        return {"library": "layershare", "class": type(self).__name__,
                "config": asdict(self.config)}


def greedy_decode(log_probs: Tensor, lengths: Tensor) -> list[str]:
    """Best path: the argmax symbol of each frame, repeats merged, blanks dropped."""
    best = log_probs.argmax(-1).cpu()
    out = []
    for row, n in zip(best, lengths.tolist()):
        row = row[:n].tolist()
        out.append(decode_ids(s for i, s in enumerate(row) if i == 0 or s != row[i - 1]))
    return [" ".join(t.split()) for t in out]


def beam_decode(log_probs: Tensor, lengths: Tensor, beam: int = 8) -> list[str]:
    """CTC prefix beam search (Hannun et al., 2014) without a language model: each prefix
    keeps the probability of ending in a blank and in its last symbol, so the paths that
    collapse to the same text are summed; the ``beam`` best prefixes survive each frame."""
    if beam < 1:
        raise LayershareError(f"beam must be >= 1, got {beam}")
    out = []
    for lp, n in zip(log_probs.float().cpu(), lengths.tolist()):
        beams = {(): (0.0, -math.inf)}                 # prefix -> (log p blank, log p symbol)
        for t in range(n):
            frame = lp[t].tolist()
            top = sorted(range(len(frame)), key=frame.__getitem__, reverse=True)[:beam + 1]
            nxt: dict = {}

            def add(prefix, blank=-math.inf, symbol=-math.inf):
                b, s = nxt.get(prefix, (-math.inf, -math.inf))
                nxt[prefix] = (_logsum(b, blank), _logsum(s, symbol))
            for prefix, (pb, ps) in beams.items():
                total = _logsum(pb, ps)
                for c in top:
                    p = frame[c]
                    if c == 0:
                        add(prefix, blank=total + p)
                    elif prefix and prefix[-1] == c:
                        add(prefix, symbol=ps + p)          # repeat without a blank: merged
                        add(prefix + (c,), symbol=pb + p)   # repeat after a blank: new symbol
                    else:
                        add(prefix + (c,), symbol=total + p)
            beams = dict(sorted(nxt.items(), key=lambda kv: -_logsum(*kv[1]))[:beam])
        best = max(beams.items(), key=lambda kv: _logsum(*kv[1]))[0]
        out.append(" ".join(decode_ids(best).split()))
    return out


def _logsum(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))
