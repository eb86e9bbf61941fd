"""Headers of foreign weight formats, checked against their bytes before anything is built:
a GGUF file cut at every byte of its header (formats/gguf_check.py), CTranslate2 Whisper
files whose head counts or declared shapes do not fit (formats/whisper.py). Each is one
line and exit 2 from ``layershare convert``, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest
import speech_helpers as S
from fault_helpers import assert_one_line, snapshot
from requirements import need_module

from layershare.formats.ctranslate2 import write_model


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    gguf = need_module("gguf", "gguf")
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_string("general.name", "tiny")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
    writer.add_tensor("token_embd.weight", np.ones((4, 8), np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_whole_gguf_header_passes_the_check(gguf_file):
    from layershare.formats.gguf_check import check_gguf
    check_gguf(gguf_file)  # no error: the cuts below fail because of the cut


def test_gguf_cut_at_every_header_byte(gguf_file, tmp_path, cli):
    from transformers.integrations.gguf.reader import GgufHeader

    data = gguf_file.read_bytes()
    header = GgufHeader.from_file(str(gguf_file))
    cut = tmp_path / "cut.gguf"
    before = None
    for n in [*range(0, header.data_start + 1), len(data) - 1]:
        cut.write_bytes(data[:n])
        before = before or snapshot(tmp_path / "out")
        rc, err = cli(["convert", cut, "--method", "tied", "--out", tmp_path / "out"])
        assert_one_line(rc, err, "cut.gguf")
        assert snapshot(tmp_path / "out") == before, n


@pytest.fixture(scope="module")
def whisper_vars(tmp_path_factory):
    directory, model = S.tiny_ct2_dir(tmp_path_factory.mktemp("ct2") / "tiny")
    return directory, S.ct2_variables(model)


def _heads(value):
    def edit(v):
        v["encoder/num_heads"] = np.int16(value)
    return edit


def _rows(name, rows):
    def edit(v):
        v[name] = v[name][:rows]
    return edit


CT2 = {  # variant -> (edit of the variables, words of the one line)
    "zero-heads": (_heads(0), "num_heads is 0"),
    "negative-heads": (_heads(-4), "num_heads is -4"),
    "heads-not-dividing": (_heads(5), "positive divisor of the width"),
    "embedding-rank-1": (lambda v: v.update({"decoder/embeddings/weight":
                                             v["decoder/embeddings/weight"][0]}), "rank-2"),
    "fused-rows": (_rows("encoder/layer_0/self_attention/linear_0/weight", 47),
                   "does not split into 3"),
    "layer-shape": (_rows("encoder/layer_1/ffn/linear_0/weight", 7), "has shape"),
    "cross-attention-rows": (_rows("decoder/layer_1/attention/linear_0/weight", 3), "has shape"),
}


@pytest.mark.parametrize("variant", CT2)
def test_ctranslate2_whisper_with_bad_heads_or_shapes(variant, whisper_vars, tmp_path, cli):
    directory, (variables, aliases) = whisper_vars
    variables = dict(variables)
    edit, words = CT2[variant]
    edit(variables)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("tokenizer.json", "config.json"):
        (src / name).write_bytes((directory / name).read_bytes())
    write_model(src / "model.bin", "WhisperSpec", variables, aliases)
    before = snapshot(tmp_path)
    rc, err = cli(["convert", src, "--method", "tied", "--out", tmp_path / "out"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before
