"""Bounded work: a calibration or evaluation text file is read and tokenized only as far as
the windows asked for need (data/windows.py), so peak memory does not grow with the file."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tiny_models as T
import transformers
from fault_helpers import ROOT, SRC
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from layershare.data.windows import read_text, token_windows

LINE = "the {} saw {} dogs near the {} river today"


def _text(n_lines: int) -> str:
    words = ["old", "young", "tall", "small", "three", "five", "wide", "cold", "long", "deep"]
    return "".join(LINE.format(words[i % 10], words[(i // 10) % 10], words[(i // 100) % 10]) + "\n"
                   for i in range(n_lines))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounded")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(_text(300).splitlines(), trainers.BpeTrainer(
        vocab_size=T.VOCAB, special_tokens=["<unk>"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    T.llama().save_pretrained(root / "model")
    fast.save_pretrained(root / "model")
    return root / "model"


class _Spy:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, tok):
        self.tok, self.longest = tok, 0

    def __call__(self, text, **kwargs):
        self.longest = max(self.longest, len(text))
        return self.tok(text, **kwargs)


def test_windows_of_a_prefix_equal_the_whole_texts(model_dir, tmp_path):
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    path = tmp_path / "text.txt"
    path.write_text(_text(3000))
    spy = _Spy(tok)
    got = token_windows(spy, read_text(str(path)), 16, 40)
    assert spy.longest < len(path.read_text()) / 4  # only a prefix was tokenized
    whole = tok(path.read_text().rstrip("\n"), add_special_tokens=False)["input_ids"]
    assert got.flatten().tolist() == whole[:40 * 16]


def test_a_large_file_is_tokenized_only_as_far_as_needed(model_dir, tmp_path):
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    path = tmp_path / "big.txt"
    path.write_text(_text(200_000))  # ~9 MB
    spy = _Spy(tok)
    windows = token_windows(spy, read_text(str(path)), 16, 8)
    assert tuple(windows.shape) == (8, 16)
    assert spy.longest < 64_000


def _peak_rss_kib(model, text_file) -> int:
    # VmHWM, this process image's own peak (ru_maxrss would count the forked pytest too)
    code = ("from layershare.cli import main\n"
            f"rc = main(['eval', {str(model)!r}, '--data', {str(text_file)!r}, '--seq-len', '16',"
            " '--windows', '4', '--json'])\n"
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
            "print(rc, hwm[0])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT,
                          env={"PYTHONPATH": f"{SRC}:{ROOT / 'tests'}", "OMP_NUM_THREADS": "1",
                               "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    rc, rss = proc.stdout.split()[-2:]
    assert rc == "0", proc.stderr
    return int(rss)


def test_peak_memory_does_not_grow_with_the_file(model_dir, tmp_path):
    """The issue's benchmark in small: eval on a 45 MB file within 1.2x the peak memory of
    a 45 kB one (the whole file tokenized would take gigabytes)."""
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text(_text(1000))
    big.write_text(_text(1000) * 1000)
    assert _peak_rss_kib(model_dir, big) < 1.2 * _peak_rss_kib(model_dir, small)
