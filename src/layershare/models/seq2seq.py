"""Seq2Seq: a pre-norm encoder-decoder Transformer for translation (Vaswani et al., 2017).

The tokenizer is joint, so source and target share one embedding table, which is also the
output projection (three-way tying, Press & Wolf, 2017). The decoder's layers attend to the
encoder output through cross-attention; for decoding, :meth:`Seq2Seq.start` computes each
decoder layer's cross-attention keys/values once per source and :meth:`Seq2Seq.decode` runs
new target tokens against the self-attention cache. ``translate`` runs greedy or beam search
(models/search.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LayershareError
from .blocks import Embeddings, KVCache, Stack, TransformerConfig, padding_mask, stack_spec
from .search import beam_search, greedy_search


@dataclass
class Seq2SeqConfig(TransformerConfig):
    encoder_layers: int = field(default=6, metadata={"help": "encoder layers"})
    decoder_layers: int = field(default=6, metadata={"help": "decoder layers"})
    bos_id: int = field(default=1, metadata={"help": "token that starts every target"})
    eos_id: int = field(default=2, metadata={"help": "token that ends a target"})

    def __post_init__(self):
        super().__post_init__()
        if len({self.pad_id, self.bos_id, self.eos_id}) != 3:
            raise LayershareError("pad_id, bos_id and eos_id must differ")
        if max(self.pad_id, self.bos_id, self.eos_id) >= self.vocab_size:
            raise LayershareError("pad_id, bos_id and eos_id must be below vocab_size")


class Seq2Seq(nn.Module):
    """Encoder-decoder; ``encoder.layers`` and ``decoder.layers`` are converted separately."""

    layershare_stacks = (stack_spec("encoder"), stack_spec("decoder", cross=True))

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.encoder = Stack(config, config.encoder_layers)
        self.decoder = Stack(config, config.decoder_layers, cross=True)

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Encoder output (batch, src_len, d_model); ``src_mask`` (batch, src_len) is True at
        real tokens, by default ``src_ids != pad_id``. Pad positions hold garbage."""
        x, rope = self.embed(src_ids)
        x, _ = self.encoder(x, rope=rope, mask=padding_mask(src_ids, src_mask, self.config.pad_id))
        return x

    def start(self, memory: Tensor, src_ids: Tensor, src_mask: Tensor | None = None) -> KVCache:
        """An empty decoder cache holding the cross-attention keys/values of ``memory``
        (one entry per decoder layer position) and the source padding mask."""
        cross = [layer.cross_attn.keys_values(memory) for layer in self.decoder.layers]
        return KVCache([None] * len(self.decoder.layers), cross,
                       padding_mask(src_ids, src_mask, self.config.pad_id))

    def decode(self, tgt_ids: Tensor, cache: KVCache) -> tuple[Tensor, KVCache]:
        """Logits (batch, time, vocab) for target tokens ``tgt_ids`` that follow the tokens in
        ``cache``; returns them and the extended cache."""
        x, rope = self.embed(tgt_ids, offset=cache.length)
        x, kv = self.decoder(x, rope=rope, causal=True, cache=cache)
        return self.embed.logits(x), KVCache(kv, cache.cross_kv, cache.cross_mask)

    def forward(self, src_ids: Tensor, tgt_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: logits for every position of ``tgt_ids`` (bos y1 ... yn).
        Target padding needs no mask: it only follows real tokens, which are causal."""
        memory = self.encode(src_ids, src_mask)
        logits, _ = self.decode(tgt_ids, self.start(memory, src_ids, src_mask))
        return logits

    def loss(self, src_ids: Tensor, tgt_ids: Tensor, src_mask: Tensor | None = None,
             label_smoothing: float = 0.0) -> Tensor:
        """Mean cross-entropy of ``tgt_ids[:, 1:]`` given ``tgt_ids[:, :-1]`` (bos ... eos
        pad...), padding ignored."""
        logits = self(src_ids, tgt_ids[:, :-1], src_mask)
        targets = tgt_ids[:, 1:].masked_fill(tgt_ids[:, 1:] == self.config.pad_id, -100)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100,
                               label_smoothing=label_smoothing)

    @torch.no_grad()
    def translate(self, src_ids: Tensor, src_mask: Tensor | None = None, beam_size: int = 4,
                  max_len: int | None = None, length_penalty: float = 1.0) -> Tensor:
        """Target token ids (batch, time) without bos, each ending in eos (unless cut at
        ``max_len`` new tokens), padded with pad_id. ``beam_size=1`` is greedy search; beam
        search ranks finished hypotheses by ``log p / length ** length_penalty``.
        ``max_len`` defaults to ``2 * src_len + 10`` (capped by learned positions)."""
        if max_len is None:
            max_len = 2 * src_ids.shape[1] + 10
            if self.config.pos == "learned":
                max_len = min(max_len, self.config.max_len - 1)
        if beam_size < 1 or max_len < 1:
            raise LayershareError(f"beam_size and max_len must be >= 1, got {beam_size}, {max_len}")
        if beam_size == 1:
            return greedy_search(self, src_ids, src_mask, max_len)
        return beam_search(self, src_ids, src_mask, beam_size, max_len, length_penalty)

    @torch.no_grad()
    def score(self, src_ids: Tensor, out_ids: Tensor, src_mask: Tensor | None = None,
              length_penalty: float = 0.0) -> Tensor:
        """Model score of outputs like ``translate``'s: ``sum log p(y_t) / len ** length_penalty``
        per row, over the non-pad tokens (eos included). Beam search maximises this score."""
        bos = torch.full_like(out_ids[:, :1], self.config.bos_id)
        logits = self(src_ids, torch.cat([bos, out_ids[:, :-1]], dim=1), src_mask)
        logp = logits.float().log_softmax(-1).gather(-1, out_ids[..., None]).squeeze(-1)
        real = out_ids != self.config.pad_id
        total = (logp * real).sum(1)
        return total / real.sum(1).clamp(min=1).float() ** length_penalty

    def layershare_base(self) -> dict:
        """How ``layershare.load`` rebuilds this model (see checkpoint.build_base)."""
        return {"library": "layershare", "class": type(self).__name__,
                "config": asdict(self.config)}
