"""DecoderLM: shapes, causality, KV-cached decoding == full recomputation (dense and shared)."""

import pytest
import torch
from reference_helpers import VARIANTS, VOCAB, ids, lm, make_variant, sharpen

from layershare import LayershareError


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_shapes_and_loss(pos):
    model = lm(pos)
    x = ids(3, 7)
    logits = model(x)
    assert logits.shape == (3, 7, VOCAB)
    logits2, cache = model(x, use_cache=True)
    assert len(cache.self_kv) == 4 and cache.length == 7
    assert cache.self_kv[0][0].shape == (3, 4, 7, 8)  # (batch, heads, time, head_dim)
    loss = model.loss(x)
    loss.backward()
    assert loss.item() == pytest.approx(torch.log(torch.tensor(float(VOCAB))).item(), rel=0.1)


def test_output_head_is_tied():
    model = lm()
    vocab_sized = [n for n, p in model.named_parameters() if VOCAB in p.shape]
    assert vocab_sized == ["embed.tokens.weight"]
    x = ids(1, 5)
    emb, rope = model.embed(x)
    hidden, _ = model.decoder(emb, rope=rope, causal=True)
    torch.testing.assert_close(model(x), hidden @ model.embed.tokens.weight.T)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_future_tokens_do_not_change_past_logits(pos):
    model = sharpen(lm(pos)).eval()
    a = ids(2, 10, seed=0)
    b = a.clone()
    b[:, 6:] = ids(2, 4, seed=1)
    with torch.no_grad():
        la, lb = model(a), model(b)
    torch.testing.assert_close(la[:, :6], lb[:, :6])
    assert not torch.allclose(la[:, 6:], lb[:, 6:])


def _incremental_logits(model, x, chunks):
    """Logits of ``x`` computed chunk by chunk through the cache."""
    out, cache, start = [], None, 0
    for size in chunks:
        piece = x[:, start:start + size]
        logits, cache = model(piece, past=cache, use_cache=True)
        out.append(logits)
        start += size
    assert start == x.shape[1] and cache.length == x.shape[1]
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("name,method,strategy", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_cached_decoding_equals_full(pos, name, method, strategy):
    model = make_variant(sharpen(lm(pos)), method, strategy)
    x = ids(2, 12)
    with torch.no_grad():
        full = model(x)
        # a prompt, a chunk of 3 after the cache (bottom-right causal mask), then one by one
        steps = _incremental_logits(model, x, [4, 3] + [1] * 5)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-4)


def test_cache_is_per_position_when_one_module_occurs_twice():
    """The same Block object at positions 0 and 2: each occurrence needs its own cache."""
    model = sharpen(lm())
    model.decoder.layers[2] = model.decoder.layers[0]
    model.eval()
    x = ids(2, 9)
    with torch.no_grad():
        full = model(x)
        steps = _incremental_logits(model, x, [3] + [1] * 6)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,method,strategy",
                         [VARIANTS[0], VARIANTS[1], VARIANTS[-1]], ids=["dense", "res", "tied-cyc"])
def test_greedy_generate_equals_argmax_of_full_recomputation(name, method, strategy):
    model = make_variant(sharpen(lm("rope")), method, strategy)
    prompt = ids(2, 3)
    out = model.generate(prompt, max_new_tokens=8)
    assert out.shape == (2, 11) and torch.equal(out[:, :3], prompt)
    seq = prompt
    with torch.no_grad():
        for _ in range(8):
            seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, seq)


def test_sampling_and_eos():
    model = sharpen(lm()).eval()
    prompt = ids(3, 2)
    greedy = model.generate(prompt, 6)
    assert torch.equal(model.generate(prompt, 6, greedy=False, top_k=1), greedy)
    g1, g2 = (torch.Generator().manual_seed(5) for _ in range(2))
    a = model.generate(prompt, 6, greedy=False, temperature=2.0, top_k=5, generator=g1)
    assert torch.equal(a, model.generate(prompt, 6, greedy=False, temperature=2.0, top_k=5,
                                         generator=g2))
    eos = int(greedy[0, 4])  # row 0 produces this token at its 3rd new step
    out = model.generate(prompt, 6, eos_id=eos)
    assert (out[0, 4:] == eos).all()
    for row, want in zip(out, greedy):  # as greedy up to a row's first eos, eos after it
        hits = (want[2:] == eos).nonzero()
        stop = 2 + int(hits[0]) + 1 if len(hits) else want.shape[0]
        assert torch.equal(row[:stop], want[:stop]) and (row[stop:] == eos).all()
    if any(eos not in w[2:] for w in greedy):  # a row still running: all 6 new tokens
        assert out.shape[1] == 8
    else:  # every row stopped: no longer than greedy, and at least up to the last first-eos
        assert 2 + max(int((w[2:] == eos).nonzero()[0]) for w in greedy) < out.shape[1] <= 8


def test_learned_positions_limit():
    model = lm(max_len=8).eval()
    with pytest.raises(LayershareError, match="max_len"):
        model(ids(1, 9))
    lm("rope", max_len=8).eval()(ids(1, 9))  # rope has no table to run out of


def test_bad_config():
    with pytest.raises(LayershareError):
        lm(n_heads=5)
    with pytest.raises(LayershareError):
        lm(pos="alibi")
    with pytest.raises(LayershareError):
        lm(n_layers=0)


def test_dropout_only_in_training():
    model = lm(dropout=0.5)
    x = ids(2, 6)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
