"""SpeechEncoder: the character table, CTC decoding, masking, sharing at full rank."""

import math

import pytest
import torch

import layershare
from layershare.errors import LayershareError
from layershare.models import build_model
from layershare.models.speech import (
    CHARS,
    SpeechEncoder,
    SpeechEncoderConfig,
    beam_decode,
    decode_ids,
    encode_text,
    greedy_decode,
    normalize_text,
    subsampled,
)


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(d_model=16, n_heads=2, d_ff=32, n_layers=4, conv_channels=4, dropout=0.0)
    cfg.update(kw)
    return SpeechEncoder(SpeechEncoderConfig(**cfg)).eval()


def test_text_normalisation_and_char_table_round_trip():
    assert CHARS[0] == "_" and len(CHARS) == 29 and len(set(CHARS)) == 29
    assert normalize_text("Don\u2019t  press Ctrl-C, it's 42!") == "don't press ctrl c it's"
    text = "the quick brown fox's jump"
    assert decode_ids(encode_text(text)) == text
    assert 0 not in encode_text(text)
    assert encode_text("123 ?!") == []


def test_greedy_ctc_decoding_on_hand_made_logits():
    a, b, c, sp, blank = CHARS.index("a"), CHARS.index("b"), CHARS.index("c"), 1, 0
    path = [a, a, blank, a, b, b, blank, sp, c, c, blank, blank]
    logits = torch.full((1, len(path), len(CHARS)), -10.0)
    logits[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    assert greedy_decode(logits, torch.tensor([len(path)])) == ["aab c"]
    assert greedy_decode(logits, torch.tensor([3])) == ["a"]  # frames past the length ignored


def test_beam_search_sums_the_paths_greedy_cannot_see():
    """Two frames of P(blank)=0.6, P(a)=0.4: the best path is blank-blank (''), but 'a' has
    probability 0.4*0.6 + 0.6*0.4 + 0.4*0.4 = 0.64 > 0.36."""
    lp = torch.full((1, 2, len(CHARS)), -1e9)
    lp[0, :, 0] = math.log(0.6)
    lp[0, :, CHARS.index("a")] = math.log(0.4)
    lengths = torch.tensor([2])
    assert greedy_decode(lp, lengths) == [""]
    assert beam_decode(lp, lengths, beam=4) == ["a"]
    with pytest.raises(LayershareError):
        beam_decode(lp, lengths, beam=0)


def test_padding_does_not_change_an_utterance():
    """Masked attention and per-utterance normalisation: an utterance gives the same
    log-probabilities alone and batched beside a longer one."""
    model = tiny()
    short, long = torch.randn(1, 50, 80), torch.randn(1, 90, 80)
    alone, n_alone = model(short, torch.tensor([50]))
    batch = torch.zeros(2, 90, 80)
    batch[0, :50], batch[1] = short[0], long[0]
    both, n_both = model(batch, torch.tensor([50, 90]))
    assert int(n_alone[0]) == int(n_both[0]) == subsampled(50) == 11
    torch.testing.assert_close(both[0, :11], alone[0], rtol=0, atol=1e-5)


def test_spec_augment_only_in_training_and_reproducible():
    model = tiny(dropout=0.0)
    x, n = torch.randn(2, 120, 80), torch.tensor([120, 100])
    torch.testing.assert_close(model(x, n)[0], model(x, n)[0])  # eval: no masks
    model.train()
    torch.manual_seed(1)
    first = model(x, n)[0]
    torch.manual_seed(1)
    torch.testing.assert_close(model(x, n)[0], first)           # the global generator decides
    assert not torch.allclose(model(x, n)[0], first)            # a new draw masks elsewhere


def test_residual_speech_encoder_at_full_rank_equals_its_dense_source():
    dense = tiny()
    with torch.no_grad():
        for p in dense.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, n = torch.randn(2, 64, 80), torch.tensor([64, 40])
    expected = dense(x, n)[0]
    shared = layershare.convert(_copy(dense), method="residual", group_size=4, rank=32,
                                init="mean")  # rank 32 >= min(m, n) of every matrix: exact
    assert type(shared.encoder.layers[0].attn.q_proj).__name__ == "ResidualLinear"
    torch.testing.assert_close(shared.eval()(x, n)[0], expected, rtol=0, atol=1e-4)
    merged = layershare.merge(shared, inplace=False)
    torch.testing.assert_close(merged.eval()(x, n)[0], expected, rtol=0, atol=1e-4)


def _copy(model):
    twin = build_model(model.layershare_base())
    twin.load_state_dict(model.state_dict())
    return twin.eval()


def test_config_errors():
    with pytest.raises(LayershareError, match="vocab_size must be 29"):
        SpeechEncoderConfig(vocab_size=30)
    with pytest.raises(LayershareError, match="time_width"):
        SpeechEncoderConfig(time_width=-1)
    with pytest.raises(LayershareError, match="too short"):
        tiny()(torch.randn(1, 5, 80), torch.tensor([5]))
