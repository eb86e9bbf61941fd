"""Every number a user passes has a range (layershare/limits.py), checked in one line before
any work: threads, sequence lengths against the model's learned positions, batch sizes,
sampling arguments, head counts of a config, a reference with another vocabulary."""

from __future__ import annotations

import json
import shutil

import pytest
import tiny_models as T
import transformers
from fault_helpers import assert_one_line, snapshot
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

TEXT = "\n".join(f"the {a} saw {b} dogs near the {c} river today" for a, b, c in
                 zip(["old", "young", "tall", "small"] * 30, ["three", "five", "nine"] * 40,
                     ["wide", "cold", "long", "slow", "deep"] * 24)) + "\n"


def _tokenizer(vocab):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TEXT.splitlines(), trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<unk>"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


@pytest.fixture(scope="module")
def gpt2_dirs(tmp_path_factory):
    """A GPT-2 (64 learned positions, 96 tokens) with a tokenizer, one with 60 tokens, text."""
    root = tmp_path_factory.mktemp("ranges")
    T.gpt2().save_pretrained(root / "gpt2")
    _tokenizer(T.VOCAB).save_pretrained(root / "gpt2")
    cfg = transformers.GPT2Config(vocab_size=60, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(root / "small-vocab")
    (root / "text.txt").write_text(TEXT)
    return root


COMPRESS = ["--method", "tied", "--keep", "0.5", "--quiet"]


@pytest.mark.parametrize("extra, words", [
    (["--seq-len", "0"], "--seq-len must be an integer >= 2"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
    (["--calib-tokens", "0"], "--calib-tokens must be an integer >= 1"),
    (["--seq-len", "100", "--calib-tokens", "200"], "longer than the model's 64 positions"),
])
def test_compress_numbers(extra, words, gpt2_dirs, tmp_path, cli):
    before = snapshot(tmp_path)
    rc, err = cli(["compress", gpt2_dirs / "gpt2", *COMPRESS, "--calib",
                   gpt2_dirs / "text.txt", *extra, "--out", tmp_path / "out"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("extra, words", [
    (["--seq-len", "0"], "--seq-len must be an integer >= 2"),
    (["--seq-len", "100"], "longer than the model's 64 positions"),
    (["--batch-size", "0"], "--batch-size >= 1"),
    (["--seq-len", "8", "--reference", "SMALL"], "vocabulary of 60 tokens"),
])
def test_eval_numbers(extra, words, gpt2_dirs, cli):
    extra = [str(gpt2_dirs / "small-vocab") if a == "SMALL" else a for a in extra]
    rc, err = cli(["eval", gpt2_dirs / "gpt2", "--data", gpt2_dirs / "text.txt", *extra])
    assert_one_line(rc, err, words)


@pytest.mark.parametrize("extra, words", [
    (["--threads", "100000"], "--threads must lie in 1.."),
    (["--threads", "0"], "--threads must lie in 1.."),
    (["--sample", "--temperature", "0"], "--temperature must be a positive finite"),
    (["--sample", "--temperature", "nan"], "--temperature must be a positive finite"),
    (["--sample", "--temperature", "-1"], "--temperature must be a positive finite"),
    (["--sample", "--top-k", "0"], "--top-k must lie in"),
    (["--sample", "--top-k", "1000"], "--top-k must lie in 1..96"),
    (["--max-new-tokens", "100"], "longer than the model's 64 positions"),
])
def test_generate_numbers(extra, words, gpt2_dirs, cli):
    rc, err = cli(["generate", gpt2_dirs / "gpt2", "--prompt", "the old dogs", *extra])
    assert_one_line(rc, err, words)


@pytest.mark.parametrize("key", ["n_head", "num_attention_heads"])
def test_zero_heads_in_a_config(key, gpt2_dirs, tmp_path, cli):
    src = tmp_path / "src"
    shutil.copytree(gpt2_dirs / "gpt2", src)
    config = json.loads((src / "config.json").read_text())
    config[key] = 0
    (src / "config.json").write_text(json.dumps(config))
    before = snapshot(tmp_path)
    for argv in (["convert", src, "--method", "tied", "--out", tmp_path / "out"],
                 ["compress", src, *COMPRESS, "--calib", "none", "--out", tmp_path / "out"]):
        rc, err = cli(argv)
        assert_one_line(rc, err, f"{key} must be a positive integer")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("argv, words", [
    (["eval-speech", "whisper-tiny-en", "--batch-size", "0"], "--batch-size"),
    (["eval-speech", "whisper-tiny-en", "--beam", "0"], "--beam"),
    (["eval-speech", "whisper-tiny-en", "--limit", "-1"], "--limit"),
    (["translate", "RUN", "--batch-size", "0"], "--batch-size must be"),
    (["translate", "RUN", "--beam", "0"], "--beam must be"),
])
def test_speech_and_translate_numbers(argv, words, tmp_path, cli):
    rc, err = cli([tmp_path / "run" if a == "RUN" else a for a in argv])
    assert_one_line(rc, err, words, "must be", ">= 1")


@pytest.mark.parametrize("extra, words", [
    (["--seq-len", "100"], "--seq-len (for the student) is 100 tokens, longer than the model's 64"),
    (["--seq-len", "16", "--eval-seq-len", "512"], "--eval-seq-len (for the student)"),
])
def test_distill_windows_longer_than_the_positions(extra, words, gpt2_dirs, tmp_path, cli):
    student = tmp_path / "student"
    assert cli(["convert", gpt2_dirs / "gpt2", "--method", "residual", "--rank", "4",
                "--out", student])[0] == 0
    text = tmp_path / "text.txt"  # splits long enough for windows of 512 tokens
    text.write_text(TEXT * 20)
    before = snapshot(tmp_path)
    rc, err = cli(["distill", student, "--teacher", gpt2_dirs / "gpt2", "--data", "text",
                   text, "--steps", "1", *extra, "--out", tmp_path / "out"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before
