"""The gradient of a step does not depend on how the global batch is split: ``grad_accum``
micro-batches give the gradient of one big batch (each micro-batch loss is divided by
``grad_accum``). Checked on the logged pre-clipping gradient norm and on one plain SGD-like
step, not on AdamW weights after a few steps (AdamW's update is almost scale-free)."""

import torch
from train_helpers import tiny, weights

from layershare.train import load_config, train
from layershare.train.report import read_metrics


def _norms(out):
    return [r["grad_norm"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]


def _run(tmp_path, text_data, name, accum, dropout):
    sets = tiny(text_data, "text", model={"dropout": dropout},
                train={"steps": 3, "batch_size": 8, "grad_accum": accum, "grad_clip": 0.0,
                       "log_every": 1, "eval_every": 3, "save_every": 3})
    train(load_config(None, sets), tmp_path / name, progress=False)
    return _norms(tmp_path / name)


def test_grad_accum_gives_the_gradient_of_the_whole_batch(tmp_path, text_data):
    one = _run(tmp_path, text_data, "one", 1, 0.0)
    two = _run(tmp_path, text_data, "two", 2, 0.0)
    four = _run(tmp_path, text_data, "four", 4, 0.0)
    assert len(one) == 3 and min(one) > 0
    torch.testing.assert_close(two, one, rtol=1e-4, atol=0)
    torch.testing.assert_close(four, one, rtol=1e-4, atol=0)
    a = weights(tmp_path / "one" / "checkpoints" / "last" / "model")
    b = weights(tmp_path / "four" / "checkpoints" / "last" / "model")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)


def test_grad_accum_with_dropout_keeps_the_scale(tmp_path, text_data):
    """Dropout on: the masks differ with the split, the gradient's scale does not (a lost
    ``/ grad_accum`` would double it)."""
    one = _run(tmp_path, text_data, "one", 1, 0.3)
    two = _run(tmp_path, text_data, "two", 2, 0.3)
    assert len(one) == len(two) == 3 and min(one) > 0  # zip of two empty lists checks nothing
    for a, b in zip(one, two):
        assert 0.8 < b / a < 1.25, (one, two)
