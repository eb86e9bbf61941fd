"""Translation (BLEU plumbing on a copy task), classification accuracy, LightFormer's two stages."""

import io
import json
from pathlib import Path

import pytest
import torch
from requirements import need_module
from train_helpers import tiny, weights

import layershare
from layershare.checkpoint import read_meta
from layershare.cli import main
from layershare.models import Seq2Seq
from layershare.train import load_config, train
from layershare.train import trainer as trainer_mod
from layershare.train.metrics import bleu
from layershare.train.report import read_metrics
from layershare.train.tasks import TranslationTask


def test_translation_copy_task_bleu(tmp_path, copy_data, monkeypatch, capsys):
    out = tmp_path / "mt"
    sets = tiny(copy_data, "parallel", model={"layers": 2, "d_model": 64, "heads": 4},
                train={"steps": 150, "batch_size": 32, "lr": 3e-3, "warmup": 10,
                       "schedule": "inverse-sqrt", "eval_every": 50, "save_every": 50},
                eval={"beam_size": 2})
    results = train(load_config(None, sets), out, progress=False)
    hyps = (out / "test.hyp").read_text().splitlines()
    refs = (out / "test.ref").read_text().splitlines()
    assert len(hyps) == len(refs) == results["test_pairs"] == 40
    assert results["test_bleu"] == pytest.approx(bleu(hyps, refs))
    sacrebleu = need_module("sacrebleu", "eval")  # the whole split, sacrebleu's defaults
    assert results["test_bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert results["test_chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert results["test_bleu"] > 50, results["test_bleu"]  # copying is learnt quickly
    assert results["test_decode_sentences_per_s"] > 0 and results["test_decode_s"] > 0
    assert refs[0] == (tmp_path / "copy" / "test.tgt").read_text().splitlines()[0]

    monkeypatch.setattr("sys.stdin", io.StringIO("the cat dog\nsat on\n"))
    assert main(["translate", str(out), "--beam", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "the"


def test_valid_decode_picks_the_best_checkpoint_by_bleu(tmp_path, copy_data, monkeypatch,
                                                       capsys):
    """eval.valid_decode = N: every evaluation also decodes the first N valid pairs greedily;
    their BLEU is logged and picks checkpoints/best, and it is what an independent greedy
    translation of those sources by the saved model scores with sacrebleu."""
    sacrebleu = need_module("sacrebleu", "eval")
    out, n = tmp_path / "mt", 12
    sets = tiny(copy_data, "parallel",
                model={"layers": 2, "d_model": 64, "heads": 4, "dropout": 0.1},
                train={"steps": 60, "batch_size": 32, "lr": 3e-3, "warmup": 10,
                       "schedule": "inverse-sqrt", "eval_every": 20, "save_every": 20},
                eval={"beam_size": 1, "valid_decode": n})
    modes = []  # the model's mode after each evaluation: training goes on with dropout
    evaluate = TranslationTask.evaluate

    def evaluate_and_record(self, model, *args, **kwargs):
        figures = evaluate(self, model, *args, **kwargs)
        modes.append(model.training)
        return figures

    monkeypatch.setattr(TranslationTask, "evaluate", evaluate_and_record)
    results = train(load_config(None, sets), out, progress=False)
    assert modes[:3] == [True, True, True]
    valid = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "valid"]
    assert len(valid) == 3 and all("bleu" in r and "chrf" in r for r in valid)
    assert len({r["bleu"] for r in valid}) == 3  # distinct: the max is a choice, not a tie
    best = max(valid, key=lambda r: r["bleu"])
    assert results["best_valid"] == {"step": best["step"], "value": best["bleu"],
                                     "metric": "bleu"}
    sources = copy_data["valid"]["src"]
    lines = Path(sources).read_text().splitlines()[:n]
    refs = Path(copy_data["valid"]["tgt"]).read_text().splitlines()[:n]
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(line + "\n" for line in lines)))
    assert main(["translate", str(out), "--beam", "1"]) == 0
    hyps = capsys.readouterr().out.splitlines()
    assert sacrebleu.corpus_bleu(hyps, [refs]).score == pytest.approx(best["bleu"])


def test_eval_of_the_valid_split_decodes_it_once(tmp_path, copy_data, monkeypatch, capsys):
    """``layershare eval RUN --split valid`` of a run with eval.valid_decode = N decodes the
    valid split once, with the run's beam: not also the N greedy pairs a training evaluation
    decodes (whose figures the whole split's supersede)."""
    need_module("sacrebleu", "eval")
    out = tmp_path / "mt"
    sets = tiny(copy_data, "parallel", train={"steps": 2, "eval_every": 2, "save_every": 2},
                eval={"beam_size": 2, "valid_decode": 8})
    train(load_config(None, sets), out, progress=False)
    decoded = []  # (beam size, sources) of every translate() call
    translate = Seq2Seq.translate

    def counting(self, src_ids, *args, **kwargs):
        decoded.append((kwargs.get("beam_size"), len(src_ids)))
        return translate(self, src_ids, *args, **kwargs)

    monkeypatch.setattr(Seq2Seq, "translate", counting)
    assert main(["eval", "--trust-config", str(out), "--split", "valid"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["valid_pairs"] == 40 and "valid_bleu" in figures
    assert {beam for beam, _ in decoded} == {2}
    assert sum(n for _, n in decoded) == 40


def test_classification_accuracy(tmp_path, class_data, capsys):
    out = tmp_path / "cls"
    sets = tiny(class_data, "classes", share={"method": "tied", "group_size": 2},
                train={"steps": 80, "batch_size": 16, "eval_every": 40, "save_every": 40})
    results = train(load_config(None, sets), out, progress=False)
    assert json.loads((out / "labels.json").read_text()) == ["BLUE", "GREEN", "RED"]
    assert results["test_acc"] > 0.9, results["test_acc"]
    assert 0.8 < results["test_macro_f1"] <= 1
    assert results["best_valid"]["metric"] == "acc"
    assert main(["eval", "--trust-config", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["test_acc"] == pytest.approx(results["test_acc"])
    assert layershare.load(out / "model").layershare_config.method == "tied"
    # int8 weights: nearly the same accuracy, about a quarter of the matrix bytes
    assert main(["eval", "--trust-config", str(out), "--int8"]) == 0
    int8 = json.loads(capsys.readouterr().out)
    assert int8["int8"] and int8["test_acc"] > results["test_acc"] - 0.1
    assert int8["weights_bytes_int8"] < 0.4 * int8["weights_bytes_fp32"]


def test_macro_f1_weighs_every_class_alike():
    """Hand-made: class 2 is rare and always missed; accuracy hardly notices, macro-F1 does.
    Class 0: 4 of its 5 found, 4 of 5 guesses right: F1 4/5. Class 1: all 4 found, 4 of 5
    guesses right: F1 8/9. Class 2: 0."""
    from layershare.train.metrics import macro_f1

    truth = [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    guess = [0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
    assert macro_f1(truth, guess) == pytest.approx((4 / 5 + 8 / 9 + 0) / 3)


def test_lightformer_converts_at_transfer_step(tmp_path, text_data):
    out = tmp_path / "lf"
    sets = tiny(text_data, "text", share={"method": "lowrank", "rank": 8, "group_size": 2,
                                          "transfer_at_step": 10},
                train={"steps": 20, "eval_every": 5, "save_every": 5})
    results = train(load_config(None, sets), out, progress=False)
    rows = read_metrics(out / "metrics.jsonl")
    transfer = [r for r in rows if r["split"] == "transfer"]
    assert [r["step"] for r in transfer] == [10]
    assert transfer[0]["params_after"] < transfer[0]["params_before"]
    assert read_meta(out / "model")["config"]["method"] == "lowrank"
    assert results["best_valid"]["step"] > 10  # chosen among the converted model's evaluations
    assert results["compression"] > 1 and results["transfer_at_step"] == 10
    # the final "last" checkpoint holds the converted model
    assert json.loads((out / "checkpoints" / "last" / "info.json").read_text())["converted"]


@pytest.mark.parametrize("stop_at", [10, 13])
def test_lightformer_resume_across_the_transfer(tmp_path, text_data, stop_at):
    """A crash right after the checkpoint of the transfer step (written before the
    conversion: still dense), or in step 13, after the transfer and before the next
    checkpoint (step 15): resuming gives the unbroken run's weights."""
    sets = tiny(text_data, "text", share={"method": "lowrank", "rank": 8, "transfer_at_step": 10},
                train={"steps": 20, "save_every": 5, "eval_every": 5})
    train(load_config(None, sets), tmp_path / "whole", progress=False)

    class Stop(Exception):
        pass

    checkpoint, train_step = trainer_mod.Trainer.checkpoint, trainer_mod.Trainer.train_step

    def checkpoint_then_stop(self):
        checkpoint(self)
        if self.step == stop_at:
            raise Stop

    def stop_in_step(self):
        if self.step == stop_at:
            assert self.converted  # the transfer happened, its checkpoint has not
            raise Stop
        return train_step(self)

    patched = ("checkpoint", checkpoint_then_stop) if stop_at == 10 else \
        ("train_step", stop_in_step)
    setattr(trainer_mod.Trainer, *patched)
    try:
        with pytest.raises(Stop):
            train(load_config(None, sets), tmp_path / "broken", progress=False)
    finally:
        trainer_mod.Trainer.checkpoint = checkpoint
        trainer_mod.Trainer.train_step = train_step
    info = json.loads((tmp_path / "broken" / "checkpoints" / "last" / "info.json").read_text())
    assert info["step"] == 10 and not info["converted"]
    train(load_config(None, sets), tmp_path / "broken", progress=False)
    a = weights(tmp_path / "whole" / "checkpoints" / "last" / "model")
    b = weights(tmp_path / "broken" / "checkpoints" / "last" / "model")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6)
