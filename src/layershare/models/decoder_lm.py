"""DecoderLM: a GPT-2 style decoder-only language model (Radford et al., 2019).

Token (+ learned position) embeddings, a stack of pre-norm causal self-attention blocks, a
final LayerNorm and an output projection tied to the token embeddings (Press & Wolf, 2017,
"Using the Output Embedding to Improve Language Models"). ``generate`` decodes with an
incremental KV cache: the prompt is run once, then one token per step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import Embeddings, KVCache, Stack, TransformerConfig, stack_spec


@dataclass
class DecoderLMConfig(TransformerConfig):
    n_layers: int = field(default=6, metadata={"help": "decoder layers"})


class DecoderLM(nn.Module):
    """Decoder-only LM; ``decoder.layers`` is the stack layershare converts."""

    layershare_stacks = (stack_spec("decoder"),)

    def __init__(self, config: DecoderLMConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.decoder = Stack(config, config.n_layers)

    def forward(self, input_ids: Tensor, past: KVCache | None = None, use_cache: bool = False):
        """Next-token logits (batch, time, vocab) for ``input_ids`` (batch, time).

        ``past``: the cache of the tokens before ``input_ids``. Returns the logits alone, or
        ``(logits, cache)`` when ``use_cache`` or ``past`` is given (the cache then covers the
        earlier tokens and these).
        """
        x, rope = self.embed(input_ids, offset=0 if past is None else past.length)
        x, kv = self.decoder(x, rope=rope, causal=True, cache=past)
        logits = self.embed.logits(x)
        if past is None and not use_cache:
            return logits
        return logits, KVCache(kv)

    def loss(self, input_ids: Tensor, targets: Tensor | None = None) -> Tensor:
        """Mean cross-entropy of next-token prediction; ``targets`` default to ``input_ids``
        shifted left by one. Targets equal to -100 are ignored."""
        logits = self(input_ids)
        if targets is None:
            logits, targets = logits[:, :-1], input_ids[:, 1:]
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, max_new_tokens: int, greedy: bool = True,
                 temperature: float = 1.0, top_k: int | None = None, eos_id: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Continue ``prompt_ids`` (batch, time; no padding) by up to ``max_new_tokens``.

        ``greedy``: argmax; else sample from ``softmax(logits / temperature)``, restricted to
        the ``top_k`` most likely tokens when given. A row that produced ``eos_id`` is padded
        with ``eos_id``; decoding stops when every row has. Returns prompt + new tokens.
        """
        out = prompt_ids
        done = torch.zeros(prompt_ids.shape[0], dtype=torch.bool, device=prompt_ids.device)
        logits, cache = self(prompt_ids, use_cache=True)
        for step in range(max_new_tokens):
            token = next_token(logits[:, -1], greedy, temperature, top_k, generator)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done |= token == eos_id
            out = torch.cat([out, token[:, None]], dim=1)
            if step == max_new_tokens - 1 or bool(done.all()):
                break
            logits, cache = self(token[:, None], past=cache)
        return out

    def layershare_base(self) -> dict:
        """How ``layershare.load`` rebuilds this model (see checkpoint.build_base)."""
        return {"library": "layershare", "class": type(self).__name__,
                "config": asdict(self.config)}


def next_token(logits: Tensor, greedy: bool = True, temperature: float = 1.0,
               top_k: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One token id per row of ``logits`` (batch, vocab): argmax, or a temperature/top-k sample."""
    if greedy:
        return logits.argmax(dim=-1)
    logits = logits.float() / max(temperature, 1e-8)
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
