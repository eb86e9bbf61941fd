"""Whole-block tying through shared Parameter objects; untying is a real copy; save/load."""

import pytest
import tiny_models
import torch
from dlt_helpers import tiny_lm
from torch import nn

import layershare
from layershare.dlt import TiedStack, roots
from layershare.dlt import save as dlt_save
from layershare.errors import LayershareError


def layer_params(tied, i):
    return [tied.param(i, k) for k in range(len(tied.holders[i]))]


def test_tie_uses_the_same_parameter_objects(lm):
    tied = TiedStack(lm)
    assert tied.path == "decoder.layers" and tied.state == [0, 1, 2, 3]
    before_root = layer_params(tied, 0)
    tied.apply([0, 0, 2, 3])
    assert all(a is b for a, b in zip(layer_params(tied, 1), before_root))  # norms too
    assert all(a is b for a, b in zip(layer_params(tied, 0), before_root))  # the root kept them
    unique = {id(p) for p in lm.decoder.layers.parameters()}
    assert len(unique) == 3 * len(before_root)


def test_chained_ties_resolve_to_the_root(lm):
    tied = TiedStack(lm)
    tied.apply([0, 0, 1, 2])
    assert tied.roots() == roots([0, 0, 1, 2]) == [0, 0, 0, 0]
    for i in (1, 2, 3):
        assert all(a is b for a, b in zip(layer_params(tied, i), layer_params(tied, 0)))
    assert TiedStack(lm).state == [0, 0, 0, 0]  # read back from the identities
    assert layershare.count(lm).layer_params == tied.layer_params()


def test_untie_is_a_real_copy_of_the_source_at_untie_time(lm):
    tied = TiedStack(lm)
    tied.apply([0, 0, 2, 3])
    with torch.no_grad():  # the shared weights train a bit while tied
        for p in layer_params(tied, 0):
            p.add_(0.5)
    at_untie = [p.detach().clone() for p in layer_params(tied, 0)]
    origins = tied.apply([0, 1, 2, 3])
    copies, sources = layer_params(tied, 1), layer_params(tied, 0)
    assert len(origins) == len(copies) and all(origins[c] is s for c, s in zip(copies, sources))
    for c, s, v in zip(copies, sources, at_untie):
        assert c is not s and c.data_ptr() != s.data_ptr()
        assert torch.equal(c, v)
        assert c.requires_grad
    with torch.no_grad():
        copies[0].add_(1.0)  # modify one: the other is unchanged
    assert torch.equal(sources[0], at_untie[0])
    with torch.no_grad():
        sources[1].mul_(3.0)
    assert torch.equal(copies[1], at_untie[1])


def test_untie_in_a_chain_follows_the_new_root(lm):
    tied = TiedStack(lm)
    tied.apply([0, 0, 1, 3])       # 2 -> 1 -> 0
    tied.apply([0, 1, 1, 3])       # 1 untied: 2 now computes with 1's fresh copy
    assert all(a is b for a, b in zip(layer_params(tied, 2), layer_params(tied, 1)))
    assert all(a is not b for a, b in zip(layer_params(tied, 1), layer_params(tied, 0)))


def test_reapplying_a_state_is_idempotent(lm):
    tied = TiedStack(lm)
    tied.apply([0, 0, 1, 3])
    ids = [id(p) for i in range(4) for p in layer_params(tied, i)]
    assert tied.apply([0, 0, 1, 3]) == {}
    assert tied.apply([0, 0, 0, 3]) == {}  # same roots: nothing moves either
    assert ids == [id(p) for i in range(4) for p in layer_params(tied, i)]


def test_gradients_of_both_uses_accumulate_into_the_source():
    class Net(nn.Module):  # y = W (W x + b) + b: one tensor used at two depths
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(2))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    net = Net()
    tied = TiedStack(net, "layers")
    tied.apply([0, 0])
    W, b = net.layers[0].weight, net.layers[0].bias
    x = torch.tensor([1.0, -2.0])
    net(x).sum().backward()
    one = torch.ones(2)
    h = (W @ x + b).detach()
    Wd = W.detach()
    # s = 1^T (W h + b), h = W x + b: dW = 1 h^T (outer use) + (W^T 1) x^T (inner use)
    assert torch.allclose(W.grad, torch.outer(one, h) + torch.outer(Wd.T @ one, x))
    assert torch.allclose(b.grad, one + Wd.T @ one)
    assert net.layers[1].weight.grad is W.grad  # one tensor, one gradient


def test_tied_gradient_is_the_sum_of_the_dense_copies_gradients():
    dense, tied_model = tiny_lm(3), tiny_lm(3)
    tied = TiedStack(tied_model)
    tied.apply([0, 1, 1])
    dense.decoder.layers[2].load_state_dict(dense.decoder.layers[1].state_dict())
    ids = torch.randint(0, 48, (2, 12))
    dense.loss(ids).backward()
    tied_model.loss(ids).backward()
    for (name, p), q1, q2 in zip(tied_model.decoder.layers[1].named_parameters(),
                                 dense.decoder.layers[1].parameters(),
                                 dense.decoder.layers[2].parameters()):
        assert torch.allclose(p.grad, q1.grad + q2.grad, atol=1e-6), name


def test_bad_states_and_partial_ties_are_refused(lm):
    tied = TiedStack(lm)
    for bad in ([0, 1, 2], [1, 1, 2, 3], [0, 2, 2, 3], [0, 1, 2, -1]):
        with pytest.raises(LayershareError):
            tied.apply(bad)
    lm.decoder.layers[2].attn.q_proj.weight = lm.decoder.layers[0].attn.q_proj.weight
    with pytest.raises(LayershareError, match="only some"):
        TiedStack(lm)
    with pytest.raises(LayershareError):
        TiedStack(layershare.convert(tiny_lm(), method="residual", rank=4))
    repeated = tiny_lm()
    repeated.decoder.layers[3] = repeated.decoder.layers[2]  # one module run twice
    with pytest.raises(LayershareError, match="module objects"):
        TiedStack(repeated)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_transformers_stacks(name):
    model = tiny_models.BUILDERS[name]().eval()
    kwargs = tiny_models.inputs(name)
    tied = TiedStack(model)
    per_layer = tied.layer_params()
    tied.apply([0, 0, 2, 2])
    assert layershare.count(model).layer_params == 2 * per_layer
    assert all(a is b for a, b in zip(layer_params(tied, 3), layer_params(tied, 2)))
    out = tiny_models.output(model, kwargs)
    assert torch.isfinite(out).all()
    tied.apply([0, 1, 2, 3])
    assert layershare.count(model).layer_params == 4 * per_layer
    assert torch.allclose(tiny_models.output(model, kwargs), out, atol=1e-5)  # copies: same values


@pytest.mark.parametrize("name", ["decoder", "gpt2", "llama"])
def test_save_load_keeps_only_unique_layers(tmp_path, name):
    model = tiny_lm() if name == "decoder" else tiny_models.BUILDERS[name]()
    kwargs = {"input_ids": torch.randint(3, 48, (2, 10))}
    tied = TiedStack(model.eval())
    tied.apply([0, 0, 2, 2])
    with torch.no_grad():  # make the unique layers differ from their initialisation
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    dlt_save(model, tmp_path / "ck", tied)
    assert getattr(model, "layershare_config", None) is None  # marks only while saving
    loaded = layershare.load(tmp_path / "ck")
    assert layershare.count(loaded).layer_params == 2 * tied.layer_params()
    assert TiedStack(loaded).state == [0, 0, 2, 2]
    assert torch.allclose(tiny_models.output(loaded, kwargs), tiny_models.output(model, kwargs),
                          atol=1e-5)
    from layershare.cli.share import inspect_report
    report = inspect_report(tmp_path / "ck")
    assert report["method"] == "tied" and report["layer_params"] == 2 * tied.layer_params()


def test_one_stack_of_a_two_stack_model(tmp_path):
    from layershare.models import Seq2Seq, Seq2SeqConfig
    model = Seq2Seq(Seq2SeqConfig(vocab_size=48, d_model=16, n_heads=2, d_ff=32, max_len=32,
                                  encoder_layers=3, decoder_layers=3, dropout=0.0)).eval()
    with pytest.raises(LayershareError, match="2 layer stacks"):
        TiedStack(model)
    tied = TiedStack(model, "decoder.layers")
    tied.apply([0, 0, 2])
    assert tied.share_config().stack == "decoder.layers"  # only this stack is tied on load
    dlt_save(model, tmp_path / "ck", tied)
    loaded = layershare.load(tmp_path / "ck")
    assert TiedStack(loaded, "decoder.layers").state == [0, 0, 2]
    assert TiedStack(loaded, "encoder.layers").state == [0, 1, 2]
    src, tgt = torch.randint(3, 48, (2, 7)), torch.randint(3, 48, (2, 5))
    assert torch.allclose(loaded(src, tgt), model(src, tgt), atol=1e-5)
