"""The benchmark report helpers that decide what lands in benchmarks/results: the speech
table's merge of stored rows (a partial run once overwrote every row it did not decode) and
the distillation report over LM and encoder runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from requirements import need_module

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speech_merge_keeps_rows_the_run_did_not_measure():
    merged = _module("speech").merged
    stored = [{"label": "original", "wer": 1}, {"label": "a", "wer": 2}, {"label": "b", "wer": 3}]
    new = [{"label": "original", "wer": 1.5}, {"label": "c", "wer": 4}]
    out = merged(stored, new)
    assert [r["label"] for r in out] == ["original", "a", "b", "c"]
    assert out[0]["wer"] == 1.5 and out[1]["wer"] == 2


def test_speech_labels_never_overlap_each_other():
    need_module("matplotlib", "train")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speech = _module("speech")
    xs = [3.5, 3.5, 3.52, 4.6, 4.65, 4.7, 5.8, 5.8, 8.2]
    ys = [100, 100, 99, 100, 98, 100, 120, 118, 63]
    fig, ax = plt.subplots()
    ax.scatter(xs, ys)
    ax.set_yscale("log")
    speech._place_labels(ax, xs, ys)
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.texts]
    assert sorted(i for t in ax.texts
                  for i in map(int, t.get_text().replace("\n", ",").split(","))) \
        == list(range(len(xs)))  # every point numbered once
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)


def _run(root: Path, name: str, task: str, after: dict, before: dict | None, curve_key: str):
    run = root / name
    run.mkdir(parents=True)
    result = {"task": task, "batch_size": 2, "seq_len": 8, "trainable_params": 10,
              "train_tokens": 32, "steps": 2, "train_time_s": 1.0, "train_tokens_per_s": 32.0,
              "peak_mem_bytes": 1e9, "after": after, "before": before,
              "still_improving": True, "best_valid": {"step": 2},
              "teacher": "tiny", "teacher_test": ({"perplexity": 5.0} if task == "distill-lm"
                                                 else {"cosine": 1.0, "mse": 0.0})}
    (run / "results.json").write_text(json.dumps(result))
    rows = [{"step": s, "split": "valid", curve_key: v} for s, v in ((0, 9.0), (2, 7.0))]
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")


def test_distill_report_tables_lm_and_encoder_runs(tmp_path, monkeypatch, capsys):
    need_module("matplotlib", "train")
    lm = {"perplexity": 8.0, "kl": 0.5, "top1": 0.6}
    enc = {"cosine": 0.9, "mse": 0.01}
    _run(tmp_path / "lm", "svd1-kl-lowrank", "distill-lm", lm, {**lm, "perplexity": 20.0}, "ppl")
    _run(tmp_path / "lm", "svd1-lm-all", "distill-lm", lm, None, "ppl")
    _run(tmp_path / "enc", "res3-lowrank", "distill-encoder", enc, {"cosine": 0.5, "mse": 0.1},
         "cosine")
    out = tmp_path / "report" / "distill"
    monkeypatch.setattr("sys.argv", ["report", str(tmp_path / "lm"), str(tmp_path / "enc"),
                                     "--out", str(out)])
    _module("report_distill").main()
    table = Path(f"{out}-table.md").read_text()
    assert "| svd1 | before distillation | - | 0 | - | - | - | 20.0 | 0.500 | 0.600 | - |" in table
    assert "| svd1 | lm-all |" in table and "| teacher (tiny) |" in table
    assert "| res3 | before distillation | - | 0 | - | - | - | 0.5000 | 0.1000 | - |" in table
    assert Path(f"{out}.png").stat().st_size > 0
    assert len(json.loads(Path(f"{out}.json").read_text())) == 3


def test_speech_scratch_convergence_reads_the_last_fifth(tmp_path):
    """"Converged" = valid WER improved by less than 2% (relative) over the last 20% of the
    steps: the evaluation nearest 80% of the run against the best one after it."""
    convergence = _module("report_speech_scratch").convergence
    for wers, converged in (([90, 60, 50, 40, 30], False), ([90, 60, 40.0, 39.9, 39.5], True)):
        rows = [{"step": 100 * (i + 1), "split": "valid", "wer": w, "loss": 1.0}
                for i, w in enumerate(wers)] + [{"step": 500, "split": "train", "loss": 1.0}]
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        c = convergence(tmp_path)
        assert c["valid_wer_at_80pct"] == wers[3] and c["converged"] is converged
        assert c["last_20pct_gain"] == round((wers[3] - min(wers[3:])) / wers[3], 4)


def test_speech_scratch_sweep_grows_past_an_edge(tmp_path, monkeypatch):
    """A best rate at the top of the grid is no optimum: the sweep doubles past it until the
    best lies inside (or EXTEND rates were added); an inside best adds nothing."""
    mod = _module("speech_scratch")
    trained = []

    def fake_train(config, overrides, out, extra):
        lr = float(next(x for x in extra if x.startswith("train.lr=")).split("=")[1])
        trained.append(lr)
        out.mkdir(parents=True)
        (out / "results.json").write_text("{}")
        loss = (lr - optimum) ** 2 + 1  # valid loss of the short run, lowest at `optimum`
        (out / "metrics.jsonl").write_text(json.dumps(
            {"step": 1, "split": "valid", "loss": loss, "wer": 100 * loss}) + "\n")

    monkeypatch.setattr(mod, "train", fake_train)
    for optimum, best, extra_rates in ((0.011, 0.012, [0.012, 0.024]), (0.003, 0.003, []),
                                       (1.0, 0.024, [0.012, 0.024]), (1e-4, 3.75e-4,
                                                                      [7.5e-4, 3.75e-4])):
        trained.clear()
        root = tmp_path / str(optimum)
        assert mod.sweep("dense12", root, []) == pytest.approx(best)
        assert trained == pytest.approx(list(mod.LRS) + extra_rates)
        report = json.loads((root / "sweep" / "dense12.json").read_text())
        assert len(report["valid_loss_by_lr"]) == len(mod.LRS) + len(extra_rates)
        trained.clear()
        assert mod.sweep("dense12", root, []) == pytest.approx(best) and trained == []  # read


def test_speech_scratch_table_prefers_side_by_side_speed():
    """The RTF of the one-at-a-time measurement (taken beside training) is replaced by the
    side-by-side one where `report --rtf` gave it, with its ratio to the reference."""
    rtf = _module("report_speech_scratch").rtf
    row = {"fp32": {"espeak-asr/test": {"real_time_factor": 0.0031}}}
    assert rtf(row) == "0.0031"
    row["rtf_side_by_side"] = {"real_time_factor": 0.00246, "vs_dense": 1.04}
    assert rtf(row) == "0.0025 (1.04x)"


def test_a_diverged_sweep_run_scores_infinity_once(tmp_path):
    """A short run stopped by a non-finite loss scores infinity and leaves a mark; the next
    sweep reads the mark and does not train it again. Any other failure is raised."""
    import math
    protocol = _module("protocol")
    starts = []

    def diverge():
        starts.append(1)
        raise protocol.Diverged("loss is nan at step 3; lower train.lr")

    run = tmp_path / "sweep" / "x-lr0.1"
    run.mkdir(parents=True)
    assert protocol.sweep_loss(run, diverge) == math.inf
    assert protocol.sweep_loss(run, diverge) == math.inf and len(starts) == 1
    assert "lower train.lr" in (run / protocol.DIVERGED).read_text()

    def broken():
        raise FileNotFoundError("no data")

    with pytest.raises(FileNotFoundError):
        protocol.sweep_loss(tmp_path / "other", broken)


def test_protocol_train_tells_divergence_from_other_failures(tmp_path, monkeypatch):
    protocol = _module("protocol")
    import subprocess
    for stderr, error in (("error: loss is nan at step 3; lower train.lr\n", protocol.Diverged),
                          ("error: no such data set\n", subprocess.CalledProcessError)):
        monkeypatch.setattr(protocol.subprocess, "run", lambda *a, _s=stderr, **k:
                            subprocess.CompletedProcess(a[0], 2, stderr=_s))
        with pytest.raises(error):
            protocol.train("mt-deen-dense.yaml", [], tmp_path / "run", [])


def test_speech_scratch_trend_joins_each_variant_across_protocols(tmp_path, capsys):
    need_module("matplotlib", "train")
    mod = _module("speech_scratch")
    reports = []
    for steps, wers in ((2400, (46.0, 49.0)), (7200, (21.0, 27.0))):
        rows = [{"label": label, "results": {"train_tokens": steps * 1000},
                 "fp32": {"espeak-asr/test": {"wer": wer}}}
                for label, wer in zip(("dense", "residual"), wers)]
        reports.append(tmp_path / f"{steps}.json")
        reports[-1].write_text(json.dumps(rows))
    mod.main(["trend", *map(str, reversed(reports)), "--out", str(tmp_path / "t.png")])
    lines = json.loads(capsys.readouterr().out)
    assert lines["residual"] == [[7.2, 27.0], [2.4, 49.0]]  # in the order read; plotted sorted
    assert (tmp_path / "t.png").stat().st_size > 0
