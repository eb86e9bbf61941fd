"""benchmarks/decode_speed.py on two tiny Seq2Seq checkpoints: every combination measured for
every model, token counts that match an independent decode, speed-ups relative to the first
model, and a profile whose categories are shares of the wall time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from requirements import need_module

import layershare
from layershare.data import EOS_ID, PAD_ID
from layershare.data.tokenizer import load_tokenizer, train_tokenizer
from layershare.models import Seq2Seq, Seq2SeqConfig

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the cat sat on the mat", "a dog ran in the park", "press enter to continue",
         "choose a colour for the border", "click the arrow next to the icon",
         "the light was good", "open the file menu", "save the document as text"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("decode_speed",
                                                  ROOT / "benchmarks" / "decode_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(directory: Path, tokenizer: Path, share: dict | None,
                eos_first: bool = False) -> Path:
    """A random model saved with its tokenizer; ``eos_first``: one whose decoder output is
    eos's embedding, so it ends every sentence at once."""
    torch.manual_seed(0)
    tok = load_tokenizer(tokenizer)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=tok.get_vocab_size(), d_model=32, n_heads=4,
                                  d_ff=64, max_len=64, encoder_layers=2, decoder_layers=2))
    if eos_first:  # the final norm outputs its bias: logits = bias . E, largest at eos
        with torch.no_grad():
            model.decoder.norm.weight.zero_()
            model.decoder.norm.bias.copy_(10 * model.embed.tokens.weight[EOS_ID])
    if share:
        model = layershare.convert(model, **share)
    layershare.save(model, directory)
    (directory / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    return directory


def test_decode_speed_measures_every_model_and_profiles(bench, tmp_path):
    need_module("matplotlib", "train")
    tokenizer = train_tokenizer(TEXTS * 4, 300, tmp_path / "tok.json")
    dense = _checkpoint(tmp_path / "dense", tokenizer, None)
    shared = _checkpoint(tmp_path / "shared", tokenizer,
                         dict(method="lowrank", group_size=2, rank=4))
    sources = tmp_path / "sources.txt"
    sources.write_text("\n".join(TEXTS) + "\n\n")
    out = tmp_path / "speed"
    threads = torch.get_num_threads()
    bench.main([str(dense), str(shared), "--data", str(sources), "--sentences", "6",
                "--beams", "1", "2", "--batch-sizes", "1", "4", "--threads", "1",
                "--rounds", "1", "--profile", "--out", str(out)])
    assert torch.get_num_threads() == threads  # restored
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["rows"]
    assert len(rows) == 2 * 2 * 2  # models x beams x batch sizes
    assert {r["model"] for r in rows} == {"dense", "shared"}
    for r in rows:
        assert r["sentences"] == 6 and r["generated_tokens"] > 0
        if r["model"] == "dense":
            assert r["speedup_tokens"] == 1.0
        assert r["tokens_per_s"] == pytest.approx(r["generated_tokens"] / r["seconds"])
    # the counted tokens are what the model generates, pad excluded: at batch 1, each
    # sentence decoded alone, tokenized here as the trainer does (a batch's default max_len
    # follows its longest source, so only batch 1 compares sentence by sentence)
    model, tok = layershare.load(dense).eval(), load_tokenizer(dense)
    expected = 0
    for line in TEXTS[:6]:
        src = torch.tensor([tok.encode(line).ids + [EOS_ID]])
        expected += int((model.translate(src, beam_size=2) != PAD_ID).sum())
    row = next(r for r in rows if (r["model"], r["beam"], r["batch"]) == ("dense", 2, 1))
    assert row["generated_tokens"] == expected
    assert len(report["profiles"]) == 2
    for p in report["profiles"]:
        shares = p["share"]
        assert set(shares) == set(bench.CATEGORIES)
        assert sum(shares.values()) == pytest.approx(1.0)
        assert all(v >= 0 for k, v in shares.items() if k != "search and Python")
        assert shares["projections"] > 0 and shares["output projection"] > 0
        assert shares["attention core"] > 0
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| beam 2 | 4 | 1 | shared |" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("share", [None, dict(method="residual", group_size=2, rank=4)])
def test_profile_hooks_are_removed(bench, tmp_path, share):
    """The profile leaves the model as it found it (a residual model has hooks of its own)."""
    tokenizer = train_tokenizer(TEXTS * 4, 300, tmp_path / "tok.json")
    model = layershare.load(_checkpoint(tmp_path / "m", tokenizer, share)).eval()

    def hooks():
        return {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks))
                for name, m in model.named_modules()}
    before = hooks()
    timer = bench.SelfTimes()
    timer.watch_model(model)
    assert "logits" in vars(model.embed) and hooks() != before
    timer.close()
    assert "logits" not in vars(model.embed)
    assert hooks() == before


def test_sources_are_cut_to_the_models_positions(bench, tmp_path):
    """A bare checkpoint (no run config) keeps ``--max-src`` source tokens, but never more
    than its learned position table: a longer test sentence is cut, not an error."""
    tokenizer = train_tokenizer(TEXTS * 4, 300, tmp_path / "tok.json")
    dense = _checkpoint(tmp_path / "dense", tokenizer, None)  # max_len 64
    model = layershare.load(dense).eval()
    assert bench.max_src(model, None, 128) == 64
    assert bench.max_src(model, None, 16) == 16
    assert bench.max_src(model, {"train": {"seq_len": 32}}, 128) == 32
    sources = tmp_path / "long.txt"
    sources.write_text(" ".join(TEXTS) * 3 + "\n")  # hundreds of tokens
    out = tmp_path / "speed"
    bench.main([str(dense), "--data", str(sources), "--sentences", "1", "--beams", "1",
                "--batch-sizes", "1", "--threads", "1", "--rounds", "1", "--out", str(out)])
    assert json.loads(out.with_suffix(".json").read_text())["rows"][0]["sentences"] == 1


def test_no_eos_makes_models_with_different_weights_generate_alike(bench, tmp_path):
    """Untrained models stop at different lengths; with --no-eos every hypothesis runs to the
    length limit (2 x source + 10 for a bare checkpoint), so both count the same tokens."""
    need_module("matplotlib", "train")
    tokenizer = train_tokenizer(TEXTS * 4, 300, tmp_path / "tok.json")
    stops = _checkpoint(tmp_path / "stops", tokenizer, None, eos_first=True)
    shared = _checkpoint(tmp_path / "shared", tokenizer,
                         dict(method="lowrank", group_size=2, rank=4))
    sources = tmp_path / "sources.txt"
    sources.write_text("\n".join(TEXTS) + "\n")
    tok = load_tokenizer(stops)
    limit = sum(2 * (len(tok.encode(line).ids) + 1) + 10 for line in TEXTS[:3])

    def generated(*flags):
        out = tmp_path / "speed"
        bench.main([str(stops), str(shared), "--data", str(sources), "--sentences", "3",
                    "--beams", "1", "2", "--batch-sizes", "1", "--threads", "1",
                    "--rounds", "1", *flags, "--out", str(out)])
        return {(r["model"], r["beam"]): r["generated_tokens"]
                for r in json.loads(out.with_suffix(".json").read_text())["rows"]}

    assert generated()[("stops", 1)] == 3  # eos at once: one token a sentence
    assert set(generated("--no-eos").values()) == {limit}
