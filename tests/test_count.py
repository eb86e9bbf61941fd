"""count: closed-form parameter counts, each tensor once."""

import pytest
import tiny_models as T

import layershare

# tiny llama: d=32, ffn 48, 4 heads of 8, 2 kv heads -> k, v are 16 x 32; 4 layers
LLAMA_MATRICES = [(32, 32), (16, 32), (16, 32), (32, 32), (48, 32), (48, 32), (32, 48)]
LAYERS = 4


def _norms_and_biases():
    return LAYERS * 2 * 32  # two RMSNorm weights per layer, no biases


@pytest.mark.parametrize("K, r, diag", [(1, 3, True), (2, 4, True), (4, 5, False), (2, 32, True)])
def test_residual_count_matches_closed_form(K, r, diag):
    model = layershare.convert(T.llama(), method="residual", group_size=K, rank=r, diag=diag)
    c = layershare.count(model)
    per_layer = sum(m * n / K + min(r, m, n) * (m + n) + (min(m, n) if diag else 0)
                    for m, n in LLAMA_MATRICES)
    assert c.layer_params == LAYERS * per_layer + _norms_and_biases()
    assert c.shared == LAYERS // K * sum(m * n for m, n in LLAMA_MATRICES)
    assert c.diagonal == (LAYERS * sum(min(m, n) for m, n in LLAMA_MATRICES) if diag else 0)
    dense = layershare.count(T.llama())
    assert c.dense_layer_params == dense.layer_params == dense.dense_layer_params
    assert c.compression == pytest.approx(c.dense_layer_params / c.layer_params)
    assert c.unique_params == sum({id(p): p.numel() for p in model.parameters()}.values())


@pytest.mark.parametrize("K", [1, 2, 4])
def test_lowrank_count_matches_closed_form(K):
    r = 6
    model = layershare.convert(T.llama(), method="lowrank", group_size=K, rank=r)
    c = layershare.count(model)
    per_layer = sum(m * r / K + r * n for m, n in LLAMA_MATRICES)
    assert c.layer_params == LAYERS * per_layer + _norms_and_biases()
    assert c.shared == (0 if K == 1 else LAYERS // K * sum(m * r for m, _ in LLAMA_MATRICES))


def test_tied_count_and_embeddings_counted_once():
    dense = layershare.count(T.llama())
    c = layershare.count(layershare.convert(T.llama(), method="tied", group_size=4))
    assert c.layer_params == dense.layer_params // 4
    assert c.compression == pytest.approx(4.0)
    assert c.embeddings == 96 * 32  # lm_head is tied to the embedding: counted once
    assert c.head == 32  # the final norm
    assert c.unique_params == c.embeddings + c.layer_params + c.head
    assert c.dense_params == dense.unique_params


def test_whisper_counts_both_stacks():
    dense = layershare.count(T.whisper())
    c = layershare.count(layershare.convert(T.whisper(), method="tied", group_size=2))
    assert c.layer_params * 2 == dense.layer_params
    assert c.dense_params == dense.unique_params
