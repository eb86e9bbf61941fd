"""deploy/int8.py: weight-only per-row int8, its error bound, its byte count in closed form,
shared tensors once, and the empty factors of a rank-0 ResidualTransformer."""

import tiny_models as T
import torch
from torch import nn

import layershare
from layershare.deploy.int8 import fp32_bytes, int8_bytes, quantize_int8_
from layershare.residual import ResidualLinear


def test_every_matrix_entry_moves_by_at_most_half_its_rows_step_and_vectors_not_at_all():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(7, 5), nn.Conv1d(3, 4, 2))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    quantize_int8_(model)
    for name, p in model.named_parameters():
        w = before[name]
        if w.dim() == 1:  # biases stay float32
            assert torch.equal(p, w)
            continue
        step = w.reshape(w.shape[0], -1).abs().amax(dim=1) / 127
        err = (p - w).reshape(w.shape[0], -1).abs().amax(dim=1)
        assert torch.all(err <= step / 2 + 1e-7), name
        levels = p.reshape(w.shape[0], -1) / step[:, None]  # on the row's integer grid
        torch.testing.assert_close(levels, levels.round(), atol=1e-4, rtol=0)


def test_bytes_in_closed_form_with_a_shared_matrix_counted_once():
    shared = nn.Parameter(torch.randn(6, 4))
    a, b = nn.Linear(4, 6), nn.Linear(4, 6)
    a.weight, b.weight = shared, shared  # one tensor, two layers
    model = nn.Sequential(a, b)
    # one 6x4 matrix: 24 int8 + 6 float32 scales; two biases of 6 float32
    assert int8_bytes(model) == 24 + 4 * 6 + 2 * 4 * 6
    assert fp32_bytes(model) == 4 * (24 + 2 * 6)
    quantize_int8_(model)
    assert a.weight is b.weight


def test_a_rank_zero_residual_model_quantizes_and_its_empty_factors_cost_nothing():
    """The shared-only / shared + diagonal ablations have rank 0: their factors are empty
    matrices (6 x 0 and 0 x 4), which must neither crash the rounding nor be charged the
    scales of their 6 rows."""
    layer = ResidualLinear(nn.Parameter(torch.randn(6, 4)), rank=0)
    assert layer.lora_B.numel() == 0 and layer.lora_B.dim() == 2
    closed = sum(p.numel() + 4 * p.shape[0] if p.dim() >= 2 else 4 * p.numel()
                 for p in layer.parameters() if p.numel() > 0)
    assert int8_bytes(layer) == closed
    x = torch.randn(3, 4)
    quantize_int8_(layer)
    assert torch.isfinite(layer(x)).all()


def test_a_converted_model_at_rank_zero_without_diagonals():
    model = T.gpt2().eval()
    layershare.convert(model, method="residual", group_size=2, rank=0, diag=False)
    ids = torch.arange(10)[None]
    fp32 = model(ids).logits
    quantize_int8_(model)
    assert torch.isfinite(model(ids).logits).all()
    assert (model(ids).logits - fp32).abs().max() < 0.1 * fp32.abs().max()
    assert int8_bytes(model) < fp32_bytes(model) / 3
