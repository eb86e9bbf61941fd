"""The summarisation task end to end on the debian-summaries recipe built from a tiny
Translation-en fixture (tests/summaries_helpers.py): train, test ROUGE, ``layershare eval``."""

import json

import pytest
import summaries_helpers as H
from train_helpers import tiny

from layershare.cli import main
from layershare.data import debian
from layershare.errors import LayershareError
from layershare.evaluate.rouge import rouge
from layershare.train import load_config, train
from layershare.train.datasets import build_task


@pytest.fixture
def summaries(tmp_path, monkeypatch):
    """``--set`` flags for a tiny run on debian-summaries prepared from the fixture."""
    H.write_lists(tmp_path / "lists")
    monkeypatch.setattr(debian, "LISTS_DIR", tmp_path / "lists")
    return tiny({}, "debian-summaries") + [f"data.dir={tmp_path / 'data'}"]


def test_summarisation_run_writes_rouge(tmp_path, summaries, capsys):
    out = tmp_path / "run"
    sets = summaries + ["model.d_model=64", "model.heads=4", "train.steps=150",
                        "train.batch_size=32", "train.seq_len=48", "train.eval_every=50",
                        "train.save_every=50", "eval.beam_size=2"]
    results = train(load_config(None, sets), out, progress=False)
    assert results["task"] == "summarisation"
    hyps = (out / "test.hyp").read_text().splitlines()
    refs = (out / "test.ref").read_text().splitlines()
    assert len(hyps) == len(refs) == results["test_pairs"] > 0
    figures = rouge(hyps, refs)
    assert {k: results[f"test_{k}"] for k in figures} == pytest.approx(figures)
    assert "test_bleu" not in results
    # a fixture synopsis is "NAME KIND ROLE", the role ("program", "development files",
    # "companion") stated first in the body: learning the roles alone scores 30-50, a model
    # that learnt nothing, or decodes the body, or swapped source and target, far less
    assert results["test_rouge1"] > 30, (results["test_rouge1"], hyps[:3], refs[:3])
    # decoding stops at the longest training synopsis, not at 2 * body + 10 tokens
    task = build_task(load_config(None, sets), out, progress=False, setup=False)
    assert task.decode_max_len == max(len(t) for _, t in task.items["train"]) - 1  # no <s>
    assert max(len(task.tok.encode(h).ids) for h in hyps) <= task.decode_max_len < 48
    assert main(["eval", "--trust-config", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["test_rougeL"] == pytest.approx(results["test_rougeL"])


def test_summarisation_has_no_dlt(summaries):
    with pytest.raises(LayershareError, match="not summarisation"):
        load_config(None, summaries + ["share.method=dlt"])
