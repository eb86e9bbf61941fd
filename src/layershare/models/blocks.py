"""Pre-norm Transformer pieces shared by the reference models.

* Attention: multi-head scaled dot-product attention (Vaswani et al., 2017, "Attention Is All
  You Need") with separate ``q_proj``/``k_proj``/``v_proj``/``o_proj`` linears, so that each
  matrix has one kind for layershare's StackSpec. It runs ``F.scaled_dot_product_attention``
  on (batch, heads, time, head_dim) tensors: all heads in one call, flash/memory-efficient
  kernels where torch has them.
* Block: pre-norm residual block ``x + f(LayerNorm(x))`` (GPT-2; Xiong et al., 2020, "On Layer
  Normalization in the Transformer Architecture"): self-attention, optional cross-attention
  (decoder of an encoder-decoder), feed-forward ``ffn.up -> GELU -> ffn.down``.
* Positions: learned absolute embeddings (GPT-2) or rotary embeddings (Su et al., 2021,
  "RoFormer"), rotating q and k of self-attention only (cross-attention has no positions).
* Initialisation as GPT-2: normal(0, 0.02), the projections that write into the residual
  stream (``o_proj``, ``ffn.down``) scaled by ``1 / sqrt(2 * layers)``.

The KV cache (:class:`KVCache`) holds one entry per layer POSITION in the stack, never per
module: when layers share weights, or when one module object occurs twice in the stack, each
occurrence sees different inputs and needs its own keys and values. Modules keep no state
between calls; everything a step needs comes in as arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..arch import StackSpec
from ..errors import LayershareError

POSITIONS = ("learned", "rope")


@dataclass
class TransformerConfig:
    """The fields every reference model has; each model's config adds its own."""

    vocab_size: int = field(default=32000, metadata={"help": "tokens in the vocabulary"})
    d_model: int = field(default=512, metadata={"help": "width of the residual stream"})
    n_heads: int = field(default=8, metadata={"help": "attention heads (d_model / n_heads each)"})
    d_ff: int = field(default=2048, metadata={"help": "hidden width of the feed-forward"})
    max_len: int = field(default=1024, metadata={
        "help": "longest sequence (the learned position table; unused by rope)"})
    pos: str = field(default="learned", metadata={"help": "positions: learned | rope"})
    rope_base: float = field(default=10000.0, metadata={"help": "rotary base frequency"})
    dropout: float = field(default=0.1, metadata={
        "help": "dropout on embeddings, attention weights and residual branches"})
    bias: bool = field(default=True, metadata={"help": "biases in the linear layers"})
    norm_eps: float = field(default=1e-5, metadata={"help": "LayerNorm epsilon"})
    pad_id: int = field(default=0, metadata={"help": "padding token (masked out of attention)"})

    def __post_init__(self):
        if self.pos not in POSITIONS:
            raise LayershareError(f"unknown pos {self.pos!r}; choose one of {', '.join(POSITIONS)}")
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name.endswith("_id") else 1  # token ids may be 0, sizes may not
            if f.type in ("int", int) and (type(value) is not int or value < least):
                raise LayershareError(f"{f.name} must be an integer >= {least}, got {value!r}")
        if self.d_model < 1 or self.n_heads < 1 or self.d_model % self.n_heads:
            raise LayershareError(f"d_model ({self.d_model}) must be a positive multiple of "
                                  f"n_heads ({self.n_heads})")
        if self.pos == "rope" and (self.d_model // self.n_heads) % 2:
            raise LayershareError("rope needs an even head dimension (d_model / n_heads)")
        if not 0.0 <= self.dropout < 1.0:
            raise LayershareError(f"dropout must be in [0, 1), got {self.dropout}")


def _attn_specs(prefix: str) -> tuple:
    return tuple((f"{prefix}.{p}_proj", (p,)) for p in "qkvo")


FFN_SPECS = (("ffn.up", ("ffn_in",)), ("ffn.down", ("ffn_out",)))
SELF_SPECS = _attn_specs("attn") + FFN_SPECS
CROSS_SPECS = _attn_specs("attn") + _attn_specs("cross_attn") + FFN_SPECS


def stack_spec(path: str, cross: bool = False) -> StackSpec:
    """The StackSpec of a :class:`Stack` at ``path`` (the ``.layers`` ModuleList)."""
    return StackSpec(f"{path}.layers", CROSS_SPECS if cross else SELF_SPECS)


@dataclass
class KVCache:
    """Keys and values per layer position, each (batch, heads, time, head_dim).

    ``self_kv[i]`` belongs to the i-th layer of the stack (None before the first step);
    ``cross_kv[i]`` are the encoder keys/values of decoder layer i, computed once per source,
    and ``cross_mask`` the source padding mask (batch, 1, 1, src_len).
    """

    self_kv: list
    cross_kv: list | None = None
    cross_mask: Tensor | None = None

    @property
    def length(self) -> int:
        """Tokens cached so far (the position of the next token)."""
        first = self.self_kv[0] if self.self_kv else None
        return 0 if first is None else first[0].shape[2]

    def reorder(self, index: Tensor) -> "KVCache":
        """The cache of batch rows ``index`` (beam search keeps the surviving beams)."""
        def pick(kv):
            return None if kv is None else tuple(t.index_select(0, index) for t in kv)
        return KVCache([pick(kv) for kv in self.self_kv],
                       None if self.cross_kv is None else [pick(kv) for kv in self.cross_kv],
                       None if self.cross_mask is None else self.cross_mask.index_select(0, index))


def rope_table(positions: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary angles, (time, head_dim / 2), in float32 whatever the model
    dtype: angles of late positions lose their low bits in half precision."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device,
                                      dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (x1, x2) halves of each head by the position's angles (GPT-NeoX layout)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class Attention(nn.Module):
    """Multi-head attention; self-attention (keys from ``x``) or cross (``kv`` given)."""

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.o_proj = nn.Linear(d_model, d_model, bias=bias)

    def heads(self, x: Tensor) -> Tensor:
        """(batch, time, d_model) -> (batch, heads, time, head_dim)."""
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def keys_values(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None):
        """Keys and values of ``x`` (also what a decoder caches of the encoder output)."""
        k, v = self.heads(self.k_proj(x)), self.heads(self.v_proj(x))
        return (k if rope is None else apply_rope(k, *rope)), v

    def forward(self, x: Tensor, rope=None, mask: Tensor | None = None, causal: bool = False,
                past=None, kv=None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Attend from ``x`` (batch, time, d_model); returns the output and (keys, values).

        ``mask``: bool, True where a key may be attended, broadcastable to (batch, heads,
        q_time, k_time). ``past``: cached (keys, values) of earlier positions, extended by
        this call's. ``kv``: precomputed keys/values (cross-attention), used as they are.
        """
        q = self.heads(self.q_proj(x))
        if kv is None:
            if rope is not None:
                q = apply_rope(q, *rope)
            k, v = self.keys_values(x, rope)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
            kv = (k, v)
        k, v = kv
        tq, tk = q.shape[2], k.shape[2]
        # Without a cache SDPA's own causal mask (top-left aligned) is right and fastest;
        # new queries after a cache need it aligned bottom-right; a single query sees all.
        is_causal = causal and tq == tk and mask is None
        if causal and not is_causal and tq > 1:
            tri = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(tk - tq)
            mask = tri if mask is None else mask & tri
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(y.transpose(1, 2).flatten(2)), kv


class FeedForward(nn.Module):
    """``down(GELU(up(x)))``, the position-wise feed-forward of every Transformer layer."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = True):
        super().__init__()
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm layer: self-attention, [cross-attention,] feed-forward, each ``x + f(LN(x))``."""

    def __init__(self, cfg: TransformerConfig, cross: bool = False):
        super().__init__()
        d, eps = cfg.d_model, cfg.norm_eps
        self.attn_norm = nn.LayerNorm(d, eps=eps)
        self.attn = Attention(d, cfg.n_heads, cfg.bias, cfg.dropout)
        self.cross_norm = nn.LayerNorm(d, eps=eps) if cross else None
        self.cross_attn = Attention(d, cfg.n_heads, cfg.bias, cfg.dropout) if cross else None
        self.ffn_norm = nn.LayerNorm(d, eps=eps)
        self.ffn = FeedForward(d, cfg.d_ff, cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope=None, mask=None, causal=False, past=None, cross_kv=None,
                cross_mask=None):
        h, kv = self.attn(self.attn_norm(x), rope=rope, mask=mask, causal=causal, past=past)
        x = x + self.drop(h)
        if self.cross_attn is not None:
            h, _ = self.cross_attn(self.cross_norm(x), mask=cross_mask, kv=cross_kv)
            x = x + self.drop(h)
        x = x + self.drop(self.ffn(self.ffn_norm(x)))
        return x, kv


class Stack(nn.Module):
    """``layers`` (the ModuleList layershare converts) and the final LayerNorm that a
    pre-norm stack needs on its output."""

    def __init__(self, cfg: TransformerConfig, n_layers: int, cross: bool = False):
        super().__init__()
        if n_layers < 1:
            raise LayershareError(f"a stack needs at least one layer, got {n_layers}")
        self.layers = nn.ModuleList(Block(cfg, cross) for _ in range(n_layers))
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        residual_std = 0.02 / math.sqrt(2 * n_layers)  # GPT-2: o_proj and ffn.down
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                std = residual_std if name.endswith(("o_proj", "ffn.down")) else 0.02
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, rope=None, mask=None, causal=False,
                cache: KVCache | None = None) -> tuple[Tensor, list]:
        """Run the layers; returns the normed output and the new (keys, values) per position."""
        new_kv = []
        for i, layer in enumerate(self.layers):  # i: the position, the cache's only key
            past = cross_kv = cross_mask = None
            if cache is not None:
                past = cache.self_kv[i]
                if cache.cross_kv is not None:
                    cross_kv, cross_mask = cache.cross_kv[i], cache.cross_mask
            x, kv = layer(x, rope=rope, mask=mask, causal=causal, past=past,
                          cross_kv=cross_kv, cross_mask=cross_mask)
            new_kv.append(kv)
        return self.norm(x), new_kv


class Embeddings(nn.Module):
    """Token embeddings (also the tied output projection), plus learned positions or the
    rotary table for the attention layers."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.pos, self.max_len, self.rope_base = cfg.pos, cfg.max_len, cfg.rope_base
        self.head_dim = cfg.d_model // cfg.n_heads
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = nn.Embedding(cfg.max_len, cfg.d_model) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        nn.init.normal_(self.tokens.weight, std=0.02)
        if self.positions is not None:
            nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, ids: Tensor, offset: int = 0):
        """Embed ``ids`` (batch, time) at positions ``offset...``; returns (x, rope or None)."""
        positions = torch.arange(offset, offset + ids.shape[1], device=ids.device)
        x = self.tokens(ids)
        rope = None
        if self.positions is not None:
            if offset + ids.shape[1] > self.max_len:
                raise LayershareError(f"sequence of {offset + ids.shape[1]} tokens is longer "
                                      f"than max_len={self.max_len}")
            x = x + self.positions(positions)
        else:
            rope = rope_table(positions, self.head_dim, self.rope_base)
        return self.drop(x), rope

    def logits(self, x: Tensor) -> Tensor:
        """Tied output projection: scores against every token embedding."""
        return F.linear(x, self.tokens.weight)


def padding_mask(ids: Tensor, mask: Tensor | None, pad_id: int) -> Tensor:
    """(batch, 1, 1, time) bool attention mask, True at real tokens (``mask`` or ids != pad)."""
    mask = ids != pad_id if mask is None else mask.bool()
    return mask[:, None, None, :]
