"""LowRankLinear: a weight factored as ``U V`` = ``lora_B lora_A`` (plus an optional diagonal),
U maybe shared.

LightFormer (Lu et al., Findings of ACL 2023) factors each trained weight by SVD ("SVD-based
weight transfer": ``W ~ U_r Sigma_r V_r^T``, ``U = U_r sqrt(Sigma_r)``, ``V = sqrt(Sigma_r)
V_r^T``), shares parameters across layers and fine-tunes. Sharing here follows Basis Sharing
(ICLR 2025): the K layers of a group share the basis ``U_g`` (m x r), obtained from the SVD of
their matrices side by side, and each keeps its coefficients ``V_l`` (r x n). With K = 1 every
layer has its own ``U`` and the error per matrix is the Eckart-Young optimum.

Unique parameters per matrix: ``m r / K + r n + [min(m, n)]``. The forward runs the two thin
matmuls ``(x V^T) U^T``: ``r (m + n)`` FLOPs per token instead of ``m n``, which is where the
speed-up comes from when ``r < m n / (m + n)``. The optional diagonal adds ``d * x`` on the
leading ``min(m, n)`` features.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .diagonal import add_diagonal, with_diagonal


class LowRankLinear(nn.Module):
    """A drop-in for ``nn.Linear`` computing ``x A^T B^T + d * x + b``, weight ``B A``.

    Named as ResidualLinear and PEFT's LoRA name their factors: ``lora_B`` (U, m x r) may be
    an ``nn.Parameter`` held by several layers (the shared basis); ``lora_A`` (V, r x n) is
    this layer's own.
    """

    def __init__(self, lora_B: nn.Parameter, lora_A: Tensor, bias: Tensor | None = None,
                 diag: Tensor | None = None, conv1d: bool = False):
        super().__init__()
        self.out_features, self.rank = lora_B.shape
        self.in_features = lora_A.shape[1]
        self.conv1d = conv1d
        self.lora_B = lora_B
        self.lora_A = nn.Parameter(lora_A.detach().clone())
        self.diag = None if diag is None else nn.Parameter(diag.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def merged_weight(self) -> Tensor:
        """``B A + diag(d)`` as a dense (out x in) tensor (for merging and ``.weight``)."""
        return with_diagonal(self.lora_B @ self.lora_A, self.diag)

    @property
    def weight(self) -> Tensor:
        return self.merged_weight()

    def forward(self, x: Tensor) -> Tensor:
        return add_diagonal(F.linear(F.linear(x, self.lora_A), self.lora_B, self.bias), x,
                            self.diag)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, diag={self.diag is not None}, bias={self.bias is not None}")
