"""ResidualLinear: a shared full-rank weight + a per-layer low-rank term + a per-layer diagonal.

ResidualTransformer (Wang & Li, ICASSP 2024, arXiv 2310.02489) writes the weight of layer ``l``

    W_l = S_g(l) + B_l A_l + diag(d_l)

with ``S_g`` (m x n) shared by the K layers of group ``g``, ``B_l`` (m x r, ``lora_B``),
``A_l`` (r x n, ``lora_A``; PEFT's names and order) and ``d_l`` (min(m, n) entries on the
leading diagonal) of layer ``l`` alone. The diagonal lifts the rank-r correction to full rank
for min(m, n) parameters. Unique parameters per matrix: ``m n / K + r (m + n) + min(m, n)``.

Two exact forward paths; each call picks the cheaper one from the number of rows T of its
input (tokens: batch x sequence):

* merged: ``F.linear(x, S + B A + diag(d), b)``. Building the weight costs ``2 r m n`` FLOPs
  (plus writing and reading one m x n tensor), independent of T; the matmul is then the dense
  layer's ``2 T m n``.
* factored: ``x S^T + b + (x A^T) B^T + d * x``. No m x n tensor is built; the extra cost is
  the two thin matmuls, ``2 T r (m + n)`` FLOPs, and ``T min(m, n)`` for the diagonal.

Equal extra cost where ``2 T r (m + n) = 2 r m n``, i.e. ``T* = m n / (m + n)`` -- the rank
cancels. Below T* (decoding: one token per sequence per step) the factored path is cheaper,
above it (prefill of long prompts, training batches) the merged one. The FLOP count is not the
whole story on a CPU: the merge is a rank-r product that runs far below peak FLOP rate and
writes m n floats, while the thin matmuls over few rows are memory-bound reads of S, A and B
that the dense layer would make anyway. The switch is therefore ``T (m + n) >=
MERGE_CROSSOVER * m n`` with the factor measured by ``benchmarks/bench_paths.py`` (results
and the alternatives tried for the factored path: benchmarks/results/paths.md); near the
crossover the two paths cost about the same, so the exact factor matters little.

The factored path is two ``addmm`` (the bias fused into the first, the low-rank term added
into the first's output) and one ``addcmul`` for the diagonal, all out of place. Stacking
``[S; B]`` would save a call but copies the shared S (per call) or keeps a dense copy of it in
every layer (in advance) -- the memory this design exists to save. What the paths cost a whole
model at decode: benchmarks/results/inference.md.

Gradients: whenever a gradient is needed (grad mode on and any of S, A, B, d trainable) the
merged path runs: its backward is one dense weight gradient that flows to S, A, B, d through
the merge, where the factored path would need three activation-sized matmul pairs. No merged
weight outlives its forward, so at most one converted matrix's dense weight is alive at a
time. The old per-layer cache of merged weights is an opt-in (:func:`set_cache_merged`,
``layershare.load(dir, cache_merged=True)``): it trades memory for prefill speed.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .diagonal import add_diagonal, with_diagonal
from .svd import truncated_svd

#: The merged path runs when ``T (m + n) >= MERGE_CROSSOVER * m n`` (T rows in the call,
#: weight m x n); 1.0 would be the FLOP break-even ``T* = m n / (m + n)``. Measured on the
#: development CPU (median over shapes 1.22), see the module docstring.
MERGE_CROSSOVER = 1.25


class ResidualLinear(nn.Module):
    """A drop-in for ``nn.Linear`` whose weight is ``shared + lora_B @ lora_A + diag(diag)``.

    The factors are named as PEFT's LoRA names them: ``lora_A`` (r x in) reads the input,
    ``lora_B`` (out x r) writes the output, so the low-rank term is ``B A``.

    ``shared`` is an ``nn.Parameter`` that the other layers of the group hold too (the same
    object), so its gradient is the sum of the group's gradients. ``conv1d`` records that the
    module replaced a GPT-2 style ``Conv1D`` (weight stored transposed) so that merging can
    give one back.
    """

    def __init__(self, shared: nn.Parameter, rank: int, bias: Tensor | None = None,
                 diag: bool = True, conv1d: bool = False):
        super().__init__()
        out_features, in_features = shared.shape
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.conv1d = conv1d
        kw = dict(device=shared.device, dtype=shared.dtype)
        self.shared = shared
        # From scratch: one factor random, the other zero, so the layer starts equal to S
        # and both factors receive gradients after the first step. (PEFT zeroes B and draws
        # A; here B is drawn and A is zero -- the same start, kept so that runs reproduce.)
        self.lora_B = nn.Parameter(torch.empty(out_features, rank, **kw))
        if rank > 0:  # rank 0 (no low-rank term) is the shared + diagonal ablation
            nn.init.kaiming_uniform_(self.lora_B, a=math.sqrt(5))
        self.lora_A = nn.Parameter(torch.zeros(rank, in_features, **kw))
        self.diag = (nn.Parameter(torch.zeros(min(out_features, in_features), **kw))
                     if diag else None)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.cache_merged = False  # opt-in: set_cache_merged(model, True)
        self.fixed_path: str | None = None  # "merged" | "factored": set_path (ONNX export)
        self._cache: tuple[tuple, Tensor] | None = None
        self._banked: Tensor | None = None  # this step's weight from a bank (bank.py)

    @torch.no_grad()
    def fit(self, weight: Tensor) -> "ResidualLinear":
        """Set A, B, d so that the merged weight approximates ``weight`` (m x n) best.

        ``B A`` = rank-r truncated SVD of ``weight - S``; ``d`` = the diagonal of what remains.
        At full rank (r = min(m, n)) the merged weight equals ``weight`` up to round-off.
        """
        delta = weight.to(self.shared) - self.shared
        if self.rank > 0:
            b, a = truncated_svd(delta, self.rank)  # (m x r) and (r x n)
            self.lora_B.copy_(b)
            self.lora_A.copy_(a)
            delta = delta - b @ a
        if self.diag is not None:
            self.diag.copy_(torch.diagonal(delta))
        return self

    def uses_merged(self, tokens: int) -> bool:
        """Whether a forward over ``tokens`` rows runs the merged path (see the module doc)."""
        if self.rank == 0 or self._needs_grad():
            return True  # rank 0: the "merge" is one diagonal, nothing to save
        if self.fixed_path is not None:
            return self.fixed_path == "merged"
        if self.cache_merged and not self.training:
            return True
        return tokens * (self.in_features + self.out_features) >= (
            MERGE_CROSSOVER * self.in_features * self.out_features)

    def _needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self._weight_params())

    def merged_weight(self) -> Tensor:
        """``S + B A + diag(d)`` as an (out x in) tensor, built afresh (functional ops only).

        Cached only with the opt-in cache (:func:`set_cache_merged`) in eval mode without
        grad, rebuilt when a parameter changes (tensor version counters tell). The merge runs
        in the parameters' dtype even under autocast (as an ``nn.Linear`` keeps an fp32 weight
        that autocast casts at the matmul), so a cached weight does not depend on the autocast
        state. Under ``torch.compile`` the cache is skipped: the compiled graph merges in its
        own kernels, and the cache key would break the graph.
        """
        cacheable = (self.cache_merged and not self.training and not torch.is_grad_enabled()
                     and not torch.compiler.is_compiling())
        if cacheable:
            key = tuple((p.data_ptr(), p._version) for p in self._weight_params())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
        device = self.shared.device.type
        if device != "meta" and torch.is_autocast_enabled(device):  # meta: load_structure
            with torch.autocast(device, enabled=False):
                weight = self._merge()
        else:  # the common case: no context manager on the hot path
            weight = self._merge()
        self._cache = (key, weight) if cacheable else None
        return weight

    def _merge(self) -> Tensor:
        return with_diagonal(torch.addmm(self.shared, self.lora_B, self.lora_A), self.diag)

    def _weight_params(self) -> list[Tensor]:
        return [p for p in (self.shared, self.lora_B, self.lora_A, self.diag) if p is not None]

    @property
    def weight(self) -> Tensor:
        """The merged weight, for code that reads ``module.weight`` (dtype checks, MHA).

        Built afresh on every read unless the opt-in cache is on or a weight bank merged it
        for this forward (:mod:`layershare.bank`): read ``shared`` for the dtype or device.
        """
        banked = getattr(self, "_banked", None)
        return self.merged_weight() if banked is None else banked

    def forward(self, x: Tensor) -> Tensor:
        banked = getattr(self, "_banked", None)
        if banked is not None:  # training: merged with its stack's layers (bank.py)
            return F.linear(x, banked, self.bias)
        tokens = x.numel() // self.in_features
        if self.uses_merged(tokens):
            return F.linear(x, self.merged_weight(), self.bias)
        return self._factored(x)

    def _factored(self, x: Tensor) -> Tensor:
        """``x S^T + b + (x A^T) B^T + d * x`` over 2-D rows: two addmm and one addcmul."""
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        y = F.linear(x2, self.shared, self.bias)  # one addmm: bias fused
        y = torch.addmm(y, F.linear(x2, self.lora_A), self.lora_B.t())
        y = add_diagonal(y, x2, self.diag)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, diag={self.diag is not None}, bias={self.bias is not None}")


def set_path(model: nn.Module, path: str | None) -> nn.Module:
    """Fix the forward path of every ResidualLinear in ``model``: ``"merged"``,
    ``"factored"`` or ``None`` (the default: chosen per call from the rows, see the module
    docstring). A graph exporter needs a fixed path: the automatic choice branches on the
    input's shape, which a graph with a dynamic sequence length cannot hold. Gradients and
    rank 0 still take the merged path. Returns ``model``."""
    if path not in (None, "merged", "factored"):
        raise ValueError(f"unknown path {path!r}")
    for module in model.modules():
        if isinstance(module, ResidualLinear):
            module.fixed_path = path
    return model


def set_cache_merged(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn the merged-weight cache of every ResidualLinear in ``model`` on or off.

    On: in eval mode without grad each layer keeps its merged dense weight after the first
    forward and runs one matmul from then on -- this trades memory for prefill speed (the
    model holds its compact tensors *and* a dense copy of every converted matrix). Off (the
    default): nothing dense is kept; caches already built are dropped. Returns ``model``.
    """
    for module in model.modules():
        if isinstance(module, ResidualLinear):
            module.cache_merged = bool(enabled)
            if not enabled:
                module._cache = None
    return model
