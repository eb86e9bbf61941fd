"""The loader gate (formats/gate.py): no custom code, no prompt, nothing read from outside the
model's directory, safetensors headers validated before use -- for every verb, the
layer-by-layer reader of ``compress`` included. Each case: exit 2, one line, no traceback,
no output, no marker file."""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest
import tiny_models as T
from fault_helpers import assert_one_line, run_module, snapshot

COMPRESS = ["--method", "tied", "--keep", "0.5", "--calib", "none", "--quiet"]


@pytest.fixture(scope="module")
def llama_dirs(tmp_path_factory):
    """A tiny Llama saved whole and sharded (several model-*.safetensors and an index)."""
    root = tmp_path_factory.mktemp("gate")
    model = T.llama()
    model.save_pretrained(root / "single")
    model.save_pretrained(root / "sharded", max_shard_size="20KB")
    assert len(json.loads((root / "sharded" / "model.safetensors.index.json").read_text())
               ["weight_map"]) > 1
    return root


def _custom_code(src, dst, marker):
    """A model directory whose config asks transformers to import ``evil.py``, which would
    create ``marker``."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(model_type="evilmodel", auto_map={"AutoConfig": "evil.EvilConfig",
                                                    "AutoModel": "evil.EvilModel"})
    (dst / "config.json").write_text(json.dumps(config))
    (dst / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\npathlib.Path('PWNED').touch()\n"
        "from transformers import LlamaConfig\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evilmodel'\n")


def test_compress_never_imports_custom_code_even_with_y_on_stdin(llama_dirs, tmp_path):
    src = tmp_path / "src"
    _custom_code(llama_dirs / "single", src, tmp_path / "PWNED")
    before = snapshot(tmp_path)
    proc = run_module(["compress", src, *COMPRESS, "--out", tmp_path / "out"], input="y\ny\n",
                      cwd=tmp_path, timeout=120)
    assert_one_line(proc.returncode, proc.stderr, "auto_map", "never runs")
    assert "custom code" not in proc.stdout  # no prompt was printed
    assert snapshot(tmp_path) == before  # no PWNED (here and in the cwd), no output


@pytest.mark.parametrize("verb", ["convert", "generate", "eval"])
def test_every_verb_refuses_custom_code(verb, llama_dirs, tmp_path, cli, monkeypatch):
    import io
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    src = tmp_path / "src"
    _custom_code(llama_dirs / "single", src, tmp_path / "PWNED")
    argv = {"convert": ["convert", src, "--method", "tied", "--out", tmp_path / "out"],
            "generate": ["generate", src, "--prompt", "a b", "--max-new-tokens", "2"],
            "eval": ["eval", src, "--data", tmp_path / "missing.txt"]}[verb]
    before = snapshot(tmp_path)
    rc, err = cli(argv)
    assert_one_line(rc, err, "never runs")
    assert snapshot(tmp_path) == before


def _point_index(src, dst, entry, tmp_path):
    shutil.copytree(src, dst)
    index_path = dst / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    victim = sorted(set(index["weight_map"].values()))[0]
    outside = tmp_path / "outside.safetensors"
    shutil.copy(dst / victim, outside)
    if entry == "symlink":
        (dst / victim).unlink()
        (dst / victim).symlink_to(outside)
        return
    if entry == "fifo":
        os.mkfifo(dst / "fifo.safetensors")
    target = {"dotdot": "../outside.safetensors", "absolute": str(outside),
              "urandom": "/dev/urandom", "fifo": "fifo.safetensors"}[entry]
    index["weight_map"] = {k: (target if v == victim else v)
                           for k, v in index["weight_map"].items()}
    index_path.write_text(json.dumps(index))


@pytest.mark.parametrize("entry, words", [
    ("dotdot", "outside the directory"),
    ("absolute", "absolute path"),
    ("urandom", "absolute path"),
    ("symlink", "outside the directory"),
])
def test_sharded_index_pointing_outside_is_refused(entry, words, llama_dirs, tmp_path, cli):
    src = tmp_path / "src"
    _point_index(llama_dirs / "sharded", src, entry, tmp_path)
    before = snapshot(tmp_path)
    rc, err = cli(["compress", src, *COMPRESS, "--out", tmp_path / "out"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


def test_sharded_index_pointing_at_a_fifo_never_hangs(llama_dirs, tmp_path):
    src = tmp_path / "src"
    _point_index(llama_dirs / "sharded", src, "fifo", tmp_path)
    proc = run_module(["compress", src, *COMPRESS, "--out", tmp_path / "out"], timeout=60)
    assert_one_line(proc.returncode, proc.stderr, "not a regular file")
    assert not (tmp_path / "out").exists()


def _header_bytes(path):
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + size]), data[8 + size:]


def _write(path, header, body, size=None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if size is None else size) + raw + body)


@pytest.mark.parametrize("variant", ["huge-header-size", "offsets-past-end", "shape-vs-bytes",
                                     "not-json", "overlap", "cut-in-header"])
def test_malformed_safetensors_header_in_the_lazy_reader(variant, llama_dirs, tmp_path, cli):
    src = tmp_path / "src"
    shutil.copytree(llama_dirs / "single", src)
    weights = src / "model.safetensors"
    header, body = _header_bytes(weights)
    name = next(k for k in header if k != "__metadata__" and "layers.0" in k)
    if variant == "huge-header-size":
        _write(weights, header, body, size=1 << 60)
    elif variant == "offsets-past-end":
        header[name]["data_offsets"][1] += 1 << 40
        _write(weights, header, body)
    elif variant == "shape-vs-bytes":
        header[name]["shape"] = [4096, 4096]
        _write(weights, header, body)
    elif variant == "not-json":
        weights.write_bytes(struct.pack("<Q", 5) + b"{oops" + body)
    elif variant == "overlap":
        other = next(k for k in header if k != "__metadata__" and k != name)
        header[name]["data_offsets"] = header[other]["data_offsets"]
        _write(weights, header, body)
    else:
        weights.write_bytes(weights.read_bytes()[:40])
    before = snapshot(tmp_path)
    rc, err = cli(["compress", src, *COMPRESS, "--out", tmp_path / "out"])
    assert_one_line(rc, err, "model.safetensors")
    assert snapshot(tmp_path) == before


def test_checkpoint_weights_symlinked_outside_are_refused(compact, tmp_path, cli):
    ck = tmp_path / "ck"
    shutil.copytree(compact, ck)
    outside = tmp_path / "elsewhere.safetensors"
    (ck / "model.safetensors").rename(outside)
    (ck / "model.safetensors").symlink_to(outside)
    before = snapshot(tmp_path)
    rc, err = cli(["merge", ck, "--out", tmp_path / "out"])
    assert_one_line(rc, err, "outside the directory")
    assert snapshot(tmp_path) == before


def test_checkpoint_description_as_a_fifo_never_hangs(compact, tmp_path):
    ck = tmp_path / "ck"
    shutil.copytree(compact, ck)
    (ck / "layershare.json").unlink()
    os.mkfifo(ck / "layershare.json")
    proc = run_module(["inspect", ck], timeout=60)
    assert_one_line(proc.returncode, proc.stderr, "not a regular file")


def test_a_tokenizer_directory_without_a_model_still_loads(tmp_path):
    """``generate --tokenizer DIR``: tokenizer files alone (no config.json) pass the gate."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    from layershare.formats.hub import auto_tokenizer

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1, "cat": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(
        tmp_path / "tok")
    assert not (tmp_path / "tok" / "config.json").exists()
    assert auto_tokenizer(tmp_path / "tok")("the cat")["input_ids"] == [1, 2]
