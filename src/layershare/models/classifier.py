"""EncoderClassifier: a Transformer encoder with a pooled linear head (BERT-style
sequence classification, Devlin et al., 2019, without pre-training tricks).

Pooling is the mean over real (non-pad) tokens, or the first token's output (BERT's [CLS]).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LayershareError
from .blocks import Embeddings, Stack, TransformerConfig, padding_mask, stack_spec

POOLS = ("mean", "first")


@dataclass
class EncoderClassifierConfig(TransformerConfig):
    n_layers: int = field(default=6, metadata={"help": "encoder layers"})
    n_classes: int = field(default=2, metadata={"help": "output classes"})
    pool: str = field(default="mean", metadata={
        "help": "mean (over non-pad tokens) | first (the first token, as BERT's [CLS])"})

    def __post_init__(self):
        super().__post_init__()
        if self.pool not in POOLS:
            raise LayershareError(f"unknown pool {self.pool!r}; choose one of {', '.join(POOLS)}")


class EncoderClassifier(nn.Module):
    """Encoder + pooling + linear head; ``encoder.layers`` is the stack layershare converts."""

    layershare_stacks = (stack_spec("encoder"),)

    def __init__(self, config: EncoderClassifierConfig):
        super().__init__()
        self.config = config
        self.embed = Embeddings(config)
        self.encoder = Stack(config, config.n_layers)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Class logits (batch, n_classes); ``mask`` (batch, time) is True at real tokens, by
        default ``input_ids != pad_id``."""
        attn_mask = padding_mask(input_ids, mask, self.config.pad_id)
        x, rope = self.embed(input_ids)
        x, _ = self.encoder(x, rope=rope, mask=attn_mask)
        if self.config.pool == "first":
            pooled = x[:, 0]
        else:
            keep = attn_mask[:, 0, 0, :, None].to(x.dtype)  # (batch, time, 1)
            pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.head(self.drop(pooled))

    def loss(self, input_ids: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean cross-entropy of ``labels`` (batch,)."""
        return F.cross_entropy(self(input_ids, mask).float(), labels)

    def layershare_base(self) -> dict:
        """How ``layershare.load`` rebuilds this model (see checkpoint.build_base)."""
        return {"library": "layershare", "class": type(self).__name__,
                "config": asdict(self.config)}
