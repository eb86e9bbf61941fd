"""``layershare generate`` on causal LMs: text, timings and memory; one-line errors."""

import pytest
import tiny_models as T
import transformers

import layershare
from layershare.cli import main


@pytest.fixture(scope="module")
def gpt2_dirs(tmp_path_factory):
    """A transformers directory with a word-level tokenizer, and its compact checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    root = tmp_path_factory.mktemp("gen")
    words = ["[UNK]", "the", "cat", "sat", "on", "mat"] + [f"w{i}" for i in range(T.VOCAB - 6)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    model = T.gpt2().eval()
    model.generation_config.pad_token_id = 0
    dense = root / "dense"
    model.save_pretrained(dense)
    fast.save_pretrained(dense)
    compact = root / "compact"
    layershare.convert(model, method="residual", group_size=2, rank=2)
    layershare.save(model, compact,
                    extra_files={"tokenizer.json": dense / "tokenizer.json",
                                 "tokenizer_config.json": dense / "tokenizer_config.json"})
    return dense, compact


@pytest.mark.parametrize("which", [0, 1])
def test_generate_prints_text_speed_and_memory(gpt2_dirs, capsys, which):
    src = gpt2_dirs[which]
    assert main(["generate", str(src), "--prompt", "the cat sat", "--max-new-tokens", "5"]) == 0
    text, stats = capsys.readouterr().out.strip().splitlines()[-2:]
    assert text.startswith("the cat sat")
    assert "prefill: 3 tokens" in stats and "decode: 4 tokens" in stats
    assert "tokens/s" in stats and "peak RSS" in stats and "MiB" in stats


@pytest.mark.parametrize("argv, message", [
    (["generate", "/no/such/model", "--prompt", "the cat"], "no such file"),
    (["generate", "DIR", "--prompt", ""], "--prompt is empty"),
    (["generate", "DIR", "--prompt", "   "], "--prompt is empty"),
    (["generate", "DIR", "--prompt", "the", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["generate", "DIR", "--prompt", "the", "--max-new-tokens", "-3"], "--max-new-tokens"),
])
def test_generate_bad_input_is_one_line_and_exit_2(gpt2_dirs, capsys, argv, message):
    argv = [str(gpt2_dirs[1]) if a == "DIR" else a for a in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layershare: error:") and message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
