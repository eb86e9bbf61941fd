"""``layershare compress`` and ``layershare eval`` on a tiny Llama with its own tokenizer."""

import json

import pytest
import tiny_models as T
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

import layershare
from layershare.cli import main

TEXT = "\n".join(f"the {a} saw {b} dogs near the {c} river today" for a, b, c in
                 zip(["old", "young", "tall", "small"] * 30, ["three", "five", "nine"] * 40,
                     ["wide", "cold", "long", "slow", "deep"] * 24))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(TEXT.splitlines(), trainers.BpeTrainer(
        vocab_size=T.VOCAB, special_tokens=["<unk>"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    model = T.llama()
    model.save_pretrained(root / "model")
    fast.save_pretrained(root / "model")
    (root / "text.txt").write_text(TEXT + "\n")
    return root


def test_compress_then_eval_with_reference(tmp_path, llama_dir, capsys):
    out = tmp_path / "small"
    assert main(["compress", str(llama_dir / "model"), "--method", "residual", "--group-size", "2",
                 "--keep", "0.8", "--calib", str(llama_dir / "text.txt"), "--calib-tokens", "64",
                 "--seq-len", "16", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "matrix parameters kept" in printed and "self_attn.q_proj" in printed
    kept = float(printed.split("matrix parameters kept: ")[1].split()[0])
    assert 0.7 < kept <= 0.8
    assert (out / "tokenizer.json").is_file()
    assert layershare.load(out).layershare_config.ranks  # per-matrix ranks travel along
    assert main(["eval", str(out), "--data", str(llama_dir / "text.txt"), "--seq-len", "16",
                 "--windows", "4", "--reference", str(llama_dir / "model"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["windows"] == 4 and result["tokens"] == 4 * 15
    assert result["kl"] > 0 and 0 <= result["top1"] <= 1 and result["perplexity"] > 1
    # the original against itself: no divergence, full agreement
    assert main(["eval", str(llama_dir / "model"), "--data", str(llama_dir / "text.txt"),
                 "--seq-len", "16", "--windows", "4", "--reference", str(llama_dir / "model"),
                 "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert abs(same["kl"]) < 1e-6 and same["top1"] == 1.0
    # int8 weights of the original against the original: a small divergence, not none
    assert main(["eval", str(llama_dir / "model"), "--data", str(llama_dir / "text.txt"),
                 "--seq-len", "16", "--windows", "4", "--reference", str(llama_dir / "model"),
                 "--json", "--int8"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert int8["int8"] and 0 < int8["kl"] < 0.05 and int8["top1"] > 0.8
    assert int8["weights_bytes_int8"] < 0.4 * int8["weights_bytes_fp32"]


@pytest.mark.parametrize("args, message", [
    (["--keep", "0"], "between 0 and 1"),
    (["--keep", "1"], "between 0 and 1"),
    (["--keep", "0.8", "--calib", "EMPTY"], "no text"),
    (["--keep", "0.8", "--calib-tokens", "100000"], "windows of 16, 6250 needed"),
    (["--keep", "0.5", "--group-size", "2"], "too small for residual"),
    (["--keep", "0.8", "--src", "no-such-model"], "no such file"),
    (["--keep", "0.8", "--src", "smollm3-1b"], "no such file"),
])
def test_bad_input_is_one_line_and_no_output(tmp_path, llama_dir, capsys, args, message):
    (tmp_path / "empty.txt").write_text("\n  \n")
    src = str(llama_dir / "model")
    if "--src" in args:
        i = args.index("--src")
        src = str(tmp_path / args[i + 1]) if args[i + 1] == "no-such-model" else args[i + 1]
        args = args[:i] + args[i + 2:]
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in args]
    if "--calib" not in args:
        args += ["--calib", str(llama_dir / "text.txt")]
    if "--calib-tokens" not in args:
        args += ["--calib-tokens", "64"]
    out = tmp_path / "out"
    assert main(["compress", src, "--method", "residual", "--seq-len", "16", "--quiet",
                 *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("layershare: error:")
    assert not out.exists()


def test_unknown_short_name_says_which_are_known(capsys):
    from layershare.formats.pretrained import locate
    with pytest.raises(layershare.LayershareError, match="known: smollm2-135m"):
        locate("smollm3-1b")


@pytest.mark.parametrize("method, group_size", [("lowrank", 1), ("residual", 2)])
def test_default_group_size_follows_the_method(tmp_path, llama_dir, method, group_size):
    out = tmp_path / "small"
    assert main(["compress", str(llama_dir / "model"), "--method", method, "--keep", "0.8",
                 "--calib", str(llama_dir / "text.txt"), "--calib-tokens", "32", "--seq-len",
                 "16", "--quiet", "--out", str(out)]) == 0
    assert layershare.load(out).layershare_config.group_size == group_size


def test_data_is_the_same_flag_as_calib(tmp_path, llama_dir):
    """``--data`` (the name every verb uses) and ``--calib`` (the older one) fit the same."""
    outs = []
    for flag in ("--data", "--calib"):
        out = tmp_path / flag.strip("-")
        assert main(["compress", str(llama_dir / "model"), "--method", "lowrank", "--keep",
                     "0.8", flag, str(llama_dir / "text.txt"), "--calib-tokens", "32",
                     "--seq-len", "16", "--quiet", "--out", str(out)]) == 0
        outs.append(layershare.load(out).state_dict())
    for name in outs[0]:
        torch.testing.assert_close(outs[0][name], outs[1][name], rtol=0, atol=0)


def test_compress_by_name_is_what_the_cli_does(tmp_path, llama_dir, capsys):
    """``layershare.compress(PATH, calib=FILE, ...)`` opens the model, builds the same
    calibration windows and gives the model the CLI saves; a data name with a model in
    memory is refused (it has no tokenizer to cut the text with)."""
    out = tmp_path / "cli"
    options = dict(method="residual", group_size=2, keep=0.8)
    assert main(["compress", str(llama_dir / "model"), "--method", "residual", "--group-size",
                 "2", "--keep", "0.8", "--data", str(llama_dir / "text.txt"), "--calib-tokens",
                 "64", "--seq-len", "16", "--quiet", "--out", str(out)]) == 0
    assert "calibration: 64 tokens of" in capsys.readouterr().out
    result = layershare.compress(str(llama_dir / "model"), calib=str(llama_dir / "text.txt"),
                                 calib_tokens=64, seq_len=16, progress=False, **options)
    assert result.calib_description.startswith("64 tokens of")
    saved = layershare.load(out).state_dict()
    for name, value in result.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], msg=name)
    with pytest.raises(layershare.LayershareError, match="needs the model by name or path"):
        layershare.compress(T.llama(), calib="brown", **options)
