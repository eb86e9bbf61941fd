"""Seq2Seq: cached decoding == teacher forcing, padding masks, greedy and beam search."""

import pytest
import torch
from reference_helpers import VARIANTS, VOCAB, ids, make_variant, seq2seq, sharpen

from layershare.models.search import beam_search

BOS, EOS, PAD = 1, 2, 0


def test_shapes_and_loss():
    model = seq2seq()
    src, tgt = ids(3, 7), ids(3, 5)
    assert model.encode(src).shape == (3, 7, 32)
    assert model(src, tgt).shape == (3, 5, VOCAB)
    tgt[1, 3:] = PAD
    loss = model.loss(src, tgt, label_smoothing=0.1)
    loss.backward()
    assert torch.isfinite(loss)
    names = [n for n, p in model.named_parameters() if VOCAB in p.shape]
    assert names == ["embed.tokens.weight"]  # one table: source, target and output


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("name,method,strategy", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_cached_decoding_equals_teacher_forcing(pos, name, method, strategy):
    model = make_variant(sharpen(seq2seq(pos)), method, strategy)
    src, tgt = ids(2, 6, seed=0), ids(2, 9, seed=1)
    src[1, 4:] = PAD  # one padded source: the cross-attention mask rides in the cache
    with torch.no_grad():
        full = model(src, tgt)
        cache = model.start(model.encode(src), src)
        steps = []
        for piece in (tgt[:, :3], *tgt[:, 3:].split(1, dim=1)):  # a chunk, then one by one
            logits, cache = model.decode(piece, cache)
            steps.append(logits)
    assert cache.length == 9
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)


def test_cache_is_per_position_when_one_module_occurs_twice():
    model = sharpen(seq2seq("rope"))
    model.decoder.layers[3] = model.decoder.layers[1]
    model.encoder.layers[2] = model.encoder.layers[0]
    model.eval()
    src, tgt = ids(2, 6), ids(2, 7, seed=1)
    with torch.no_grad():
        full = model(src, tgt)
        cache = model.start(model.encode(src), src)
        steps = []
        for piece in tgt.split(1, dim=1):
            logits, cache = model.decode(piece, cache)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_padding_does_not_change_real_outputs(pos):
    model = sharpen(seq2seq(pos)).eval()
    src, tgt = ids(2, 5), ids(2, 4, seed=1)
    padded = torch.cat([src, torch.full((2, 3), PAD)], dim=1)
    explicit = torch.cat([src, ids(2, 3, seed=2)], dim=1)  # garbage, masked by src_mask
    mask = torch.arange(8) < 5
    mask = mask.expand(2, 8)
    with torch.no_grad():
        ref_mem, ref = model.encode(src), model(src, tgt)
        for x, m in ((padded, None), (explicit, mask)):
            torch.testing.assert_close(model.encode(x, m)[:, :5], ref_mem, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(model(x, tgt, m), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_is_greedy(seed, length_penalty):
    model = sharpen(seq2seq(), seed=seed).eval()
    src = ids(6, 7, seed=seed)
    greedy = model.translate(src, beam_size=1, max_len=10)
    assert torch.equal(beam_search(model, src, None, 1, 10, length_penalty), greedy)
    with torch.no_grad():  # greedy itself: argmax of full recomputation, step by step
        tgt = torch.full((6, 1), BOS)
        for _ in range(greedy.shape[1]):
            logits = model(src, tgt)[:, -1]
            logits[:, [PAD, BOS]] = float("-inf")
            tgt = torch.cat([tgt, logits.argmax(-1, keepdim=True)], dim=1)
    for row, out in zip(tgt[:, 1:].tolist(), greedy.tolist()):
        n = out.index(EOS) + 1 if EOS in out else len(out)
        assert row[:n] == out[:n] and set(out[n:]) <= {PAD}


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_scores_at_least_greedy(pos, seed, length_penalty):
    """Beam search maximises ``score`` (log p / len ** length_penalty); on these models its
    output scores >= greedy's on every sentence. This is typical, not a theorem (see
    models/search.py): the test pins the behaviour, a failure means a search bug or an
    unlucky model, to be told apart with test_beam_matches_naive_reference."""
    model = make_variant(sharpen(seq2seq(pos), seed=seed), "residual", "sequence")
    src = ids(6, 7, seed=seed)
    greedy = model.translate(src, beam_size=1, max_len=10)
    beam = model.translate(src, beam_size=4, max_len=10, length_penalty=length_penalty)
    g = model.score(src, greedy, length_penalty=length_penalty)
    b = model.score(src, beam, length_penalty=length_penalty)
    assert (b >= g - 1e-5).all(), (b - g)


def _naive_beam(model, src, k, max_len, lp):
    """The same search for one sentence, written plainly: Python lists, full recomputation."""
    beams, finals = [(0.0, [])], []
    for t in range(1, max_len + 1):
        cands = []
        for s, toks in beams:
            logp = model(src, torch.tensor([[BOS] + toks]))[0, -1].float().log_softmax(-1)
            logp[[PAD, BOS]] = float("-inf")
            cands += [(s + logp[v].item(), toks + [v]) for v in range(VOCAB)]
        top = sorted(cands, key=lambda c: -c[0])[:2 * k]
        finals += [(s / t ** lp, toks) for rank, (s, toks) in enumerate(top)
                   if toks[-1] == EOS and rank < k]
        beams = [c for c in top if c[1][-1] != EOS][:k]
        if len(finals) >= k and max(f[0] for f in finals) >= beams[0][0] / t ** lp:
            break
    else:
        finals += [(s / max_len ** lp, toks) for s, toks in beams]
    return max(finals, key=lambda f: f[0])


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_matches_naive_reference(length_penalty):
    """Batched, cached, padded beam search == the plain per-sentence version."""
    model = make_variant(sharpen(seq2seq("rope"), seed=2), "lowrank", "cycle")
    src = ids(5, 7, seed=2)
    src[1, 5:] = PAD
    src[3, 3:] = PAD
    beam = model.translate(src, beam_size=3, max_len=8, length_penalty=length_penalty)
    scores = model.score(src, beam, length_penalty=length_penalty)
    with torch.no_grad():
        for i in range(5):
            real = src[i:i + 1, :int((src[i] != PAD).sum())]
            score, toks = _naive_beam(model, real, 3, 8, length_penalty)
            assert [t for t in beam[i].tolist() if t != PAD] == toks
            assert scores[i].item() == pytest.approx(score, abs=1e-4)


def test_translate_output_format():
    model = sharpen(seq2seq(), seed=1).eval()
    src = ids(6, 7, seed=1)
    for beam_size in (1, 3):
        out = model.translate(src, beam_size=beam_size, max_len=10)
        assert out.shape[0] == 6 and out.shape[1] <= 10
        for row in out.tolist():
            assert BOS not in row
            if EOS in row:  # eos ends the output, pad after it
                assert set(row[row.index(EOS) + 1:]) <= {PAD}
            else:
                assert PAD not in row


@pytest.mark.parametrize("method, group_size, rank", [
    ("lowrank", 2, 32),    # LightFormer: a shared basis of full rank, per-layer coefficients
    ("lowrank", 1, 32),    # per-layer SVD at full rank
    ("residual", 2, 32),   # ResidualTransformer: shared mean + a full-rank residual
])
def test_beam_search_of_a_full_rank_shared_decoder_equals_the_dense_one(method, group_size,
                                                                         rank):
    """The SVD transfer at full rank reproduces every matrix, so greedy and beam search give
    the dense model's outputs token for token (what LightFormer's transfer starts from)."""
    import copy

    import layershare

    # d_ff = d_model: every matrix is 32 x 32, so rank 32 is full even for a basis that two
    # layers share ([W_1 W_2] is 32 x 64; ranks are capped at min(m, n) per matrix)
    dense = sharpen(seq2seq("rope", d_ff=32), seed=3).eval()
    shared = layershare.convert(copy.deepcopy(dense), method=method, group_size=group_size,
                                rank=rank, init="mean")
    assert layershare.count(shared).layer_params != layershare.count(dense).layer_params
    src = ids(6, 7, seed=3)
    src[2, 4:] = PAD
    for beam_size in (1, 4):
        expected = dense.translate(src, beam_size=beam_size, max_len=12)
        got = shared.translate(src, beam_size=beam_size, max_len=12)
        assert torch.equal(got, expected), (beam_size, got, expected)
        torch.testing.assert_close(shared.score(src, got), dense.score(src, expected),
                                   rtol=1e-4, atol=1e-4)
