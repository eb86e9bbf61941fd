"""The reference models through layershare's convert / count / save / load / merge."""

import pytest
import torch
from reference_helpers import VARIANTS, classifier, ids, lm, make_variant, seq2seq, sharpen

import layershare
from layershare import LayershareError
from layershare.models import build_model

BUILDERS = {"lm": lm, "seq2seq": seq2seq, "classifier": classifier}


def _outputs(kind, model):
    with torch.no_grad():
        if kind == "lm":
            return model(ids(2, 8))
        if kind == "classifier":
            return model(ids(2, 8))
        src = ids(2, 6)
        return model(src, ids(2, 5, seed=1)), model.translate(src, beam_size=2, max_len=6)


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("name,method,strategy", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_save_load_round_trip(tmp_path, kind, name, method, strategy):
    model = make_variant(sharpen(BUILDERS[kind]("rope" if kind == "seq2seq" else "learned")),
                         method, strategy)
    layershare.save(model, tmp_path / "ckpt")
    loaded = layershare.load(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert _same(_outputs(kind, loaded), _outputs(kind, model))
    assert layershare.count(loaded) == layershare.count(model)
    n_unique = sum(p.numel() for p in model.parameters())  # parameters() lists each once
    assert layershare.count(loaded).unique_params == n_unique


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_merge_gives_dense_equivalent(kind):
    model = make_variant(sharpen(BUILDERS[kind]()), "residual", "cycle")
    dense = layershare.merge(model, inplace=False)
    assert isinstance(dense.get_submodule("encoder.layers.0.ffn.up" if kind != "lm"
                                          else "decoder.layers.0.ffn.up"), torch.nn.Linear)
    a, b = _outputs(kind, model), _outputs(kind, dense)
    for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        torch.testing.assert_close(x.float(), y.float(), rtol=1e-4, atol=1e-4)


def test_residual_count_closed_form():
    """K = 2 residual: per matrix m n / K + r (m + n) + min(m, n), summed over the layers."""
    L, K, r = 4, 2, 4
    model = lm(n_layers=L)  # d_model 32, d_ff 48
    dense = layershare.count(model)
    layershare.convert(model, method="residual", group_size=K, rank=r, init="scratch")
    c = layershare.count(model)
    shapes = [(32, 32)] * 4 + [(48, 32), (32, 48)]  # q k v o, ffn.up, ffn.down (out, in)
    assert c.shared == sum(L * m * n // K for m, n in shapes)
    assert c.lowrank == sum(L * r * (m + n) for m, n in shapes)
    assert c.diagonal == sum(L * min(m, n) for m, n in shapes)
    per_layer_other = 4 * 32 + 48 + 32 + 2 * 2 * 32  # biases + two LayerNorms
    assert c.other == L * per_layer_other
    assert c.layer_params == sum(L * (m * n // K + r * (m + n) + min(m, n)) for m, n in shapes) \
        + L * per_layer_other
    assert c.dense_layer_params == dense.layer_params
    assert c.embeddings == dense.embeddings and c.head == dense.head
    assert c.unique_params == sum(p.numel() for p in model.parameters())


def test_seq2seq_stacks_are_converted_separately():
    model = layershare.convert(seq2seq(), method="tied", group_size=2, strategy="cycle")
    paths = [s.path for s in model.layershare_stacks_converted]
    assert paths == ["encoder.layers", "decoder.layers"]
    enc, dec = model.encoder.layers, model.decoder.layers
    assert enc[0].attn.q_proj.weight is enc[2].attn.q_proj.weight
    assert dec[1].cross_attn.k_proj.weight is dec[3].cross_attn.k_proj.weight
    assert enc[0].attn.q_proj.weight is not dec[0].attn.q_proj.weight


def test_build_model_validates():
    base = lm().layershare_base()
    assert base["library"] == "layershare" and base["class"] == "DecoderLM"
    assert type(build_model(base)).__name__ == "DecoderLM"
    with pytest.raises(LayershareError, match="unknown layershare model class"):
        build_model({**base, "class": "Tensor"})
    with pytest.raises(LayershareError, match="unknown config fields"):
        build_model({**base, "config": {**base["config"], "n_experts": 8}})
    with pytest.raises(LayershareError):
        build_model({**base, "config": {**base["config"], "pos": "alibi"}})
    with pytest.raises(LayershareError):
        build_model({**base, "library": "transformers"})
