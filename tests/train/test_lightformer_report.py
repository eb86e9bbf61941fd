"""benchmarks/lightformer.py: the sizes its plan gives each variant, how ``run`` chooses
rates (its sweep's schedule, dense-long at dense's rate, --lrs) and skips finished runs, and
its report (report_lightformer.py) over finished runs (int8 measured in a subprocess,
convergence read from the valid BLEU curve, where a transfer's curve starts)."""

import importlib.util
import json
from pathlib import Path

import pytest
from requirements import need_module
from train_helpers import tiny

from layershare.train import load_config, train

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location(
        "lightformer_bench", ROOT / "benchmarks" / "lightformer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.BASE.clear()
    module.EXTRA.clear()


@pytest.fixture
def report(bench):
    """benchmarks/report_lightformer.py, the report side (bench put its folder on the path)."""
    import report_lightformer
    return report_lightformer


def test_plan_sizes_every_variant_against_the_budget(bench, report):
    """LightFormer at >= 3.8x fewer layer parameters with the largest such rank; every
    baseline at no more layer parameters than LightFormer's (the budget)."""
    bench.BASE.update(layers=6, d_model=96, heads=4)
    plan = bench.plan("mt")
    lf, budget = plan["lightformer"], plan["lightformer"]["layer_params"]
    assert lf["fewer"] >= bench.TARGET and lf["share"]["group_size"] == bench.GROUP
    assert {k for k, v in plan.items() if v and v.get("transfer")} == set(report.TRANSFERS)
    one_more = dict(lf["share"], rank=lf["share"]["rank"] + 1, init="scratch")
    assert plan["dense"]["layer_params"] / bench.layer_params(
        "mt-deen-dense.yaml", {}, one_more) < bench.TARGET  # the largest rank that fits
    for name in ("transfer-k1", "shared-scratch", "residual", "shallow", "narrow"):
        assert plan[name]["layer_params"] <= budget, name
    assert plan["dense-long"]["layer_params"] == plan["dense"]["layer_params"]


def test_report_reads_runs_measures_int8_and_plots(bench, tmp_path, copy_data):
    need_module("matplotlib", "train")
    need_module("sacrebleu", "eval")
    root = tmp_path / "runs"
    for name, share in (("dense", {"method": "dense"}),
                        ("lightformer", {"method": "lowrank", "group_size": 2, "rank": 8})):
        sets = tiny(copy_data, "parallel", model={"layers": 2, "d_model": 32, "heads": 2},
                    share=share, eval={"beam_size": 1, "valid_decode": 8},
                    train={"steps": 40, "batch_size": 32, "eval_every": 10, "save_every": 20})
        train(load_config(None, sets), root / "mt" / name, progress=False)
    bench.main(["report", "mt", "--root", str(root), "--out", str(tmp_path / "out")])
    rows = json.loads((tmp_path / "out" / "lightformer-mt.json").read_text())
    assert [r["name"] for r in rows] == ["dense", "lightformer"]
    assert [r["transfer"] for r in rows] == [False, True] and rows[0]["lr"] == 3e-3
    for r in rows:
        int8 = r["int8"]
        assert int8["layer_bytes_int8"] < 0.4 * int8["layer_bytes_fp32"]
        assert int8["model_bytes_fp32"] > int8["layer_bytes_fp32"]
        assert int8["test_pairs"] == 40 and 0 <= int8["test_bleu"] <= 100
        curve = r["convergence"]["curve"]
        assert [s for s, _ in curve] == [10, 20, 30, 40] and r["convergence"]["converged"] in (
            True, False)
    assert rows[1]["int8"]["layer_bytes_fp32"] < rows[0]["int8"]["layer_bytes_fp32"]
    table = (tmp_path / "out" / "lightformer-mt-table.md").read_text()
    assert table.count("\n") == 4 and "| LightFormer (transfer + share) |" in table
    for png in ("pareto", "curves"):
        assert (tmp_path / "out" / f"lightformer-mt-{png}.png").stat().st_size > 0
    measured = (root / "mt" / "dense" / "measure-int8.json").stat().st_mtime
    bench.main(["report", "mt", "--root", str(root), "--out", str(tmp_path / "out")])
    assert (root / "mt" / "dense" / "measure-int8.json").stat().st_mtime == measured  # cached


def test_convergence_of_a_rising_metric(report, tmp_path):
    for values, converged in (([10, 20, 30, 40, 50], False), ([10, 20, 30, 30.2, 30.1], True)):
        rows = [{"step": 10 * (i + 1), "split": "valid", "bleu": v} for i, v in enumerate(values)]
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        c = report.convergence(tmp_path, "bleu")
        assert c["converged"] is converged and c["valid_at_80pct"] == values[3]


def test_a_sweep_run_is_its_full_run_compressed(bench, tmp_path, monkeypatch):
    """Both the full run and its sweep's short runs warm up for a tenth of their steps (the
    full schedule compressed five times, so the rate found is the rate the full run needs);
    the full run evaluates EVALS times, a sweep run twice; no stale step count survives into
    a sweep run."""
    seen = []

    def fake_train(config, overrides, out, extra):
        seen.append(dict(item.split("=", 1) for item in overrides + extra))
        return {}

    monkeypatch.setattr(bench, "train", fake_train)

    def fake_loss(run, start):  # best at the middle rate, so the grid does not grow
        start()
        return abs(float(run.name.split("-lr")[1]) - bench.LRS[1])

    monkeypatch.setattr(bench, "sweep_loss", fake_loss)
    (tmp_path / "sweep").mkdir()  # the real runs make it
    full = bench.schedule(1000)
    assert dict(i.split("=") for i in full) == {
        "train.steps": "1000", "train.warmup": "100", "train.eval_every": "50",
        "train.save_every": "25"}
    bench.sweep("mt-deen-dense.yaml", "dense", ["model.layers=2"] + full, 1000, tmp_path)
    assert len(seen) == len(bench.LRS)
    for run in seen:
        assert (run["train.steps"], run["train.warmup"], run["train.eval_every"]) == (
            "200", "20", "100")
        assert run["model.layers"] == "2" and run["eval.valid_decode"] == "0"
    assert json.loads((tmp_path / "sweep" / "dense.json").read_text())["best"] == bench.LRS[1]


def test_run_reuses_the_dense_rate_for_dense_long_and_skips_finished_runs(bench, tmp_path,
                                                                          monkeypatch):
    """dense-long is the dense model trained longer: no sweep of its own, dense's rate (and
    a one-line error while dense's sweep has not run); a finished run is not trained or
    tested again."""
    trained, swept = [], []
    monkeypatch.setattr(bench, "train", lambda config, sets, out, extra: trained.append(
        (out.name, [e for e in extra if e.startswith("train.lr=")])))
    monkeypatch.setattr(bench, "sweep", lambda config, name, sets, steps, root, lrs:
                        swept.append((name, lrs)) or 1e-3)

    def args(*variants):
        return ["run", "mt", *variants, "--dense-steps", "100", "--finetune-steps", "20",
                "--root", str(tmp_path), "--model", "layers=2"]

    with pytest.raises(SystemExit, match="dense.json is missing: run the dense variant first"):
        bench.main(args("dense-long"))
    (tmp_path / "mt" / "sweep").mkdir(parents=True)
    (tmp_path / "mt" / "sweep" / "dense.json").write_text(json.dumps({"best": 8e-3}))
    (tmp_path / "mt" / "shallow").mkdir()
    (tmp_path / "mt" / "shallow" / "results.json").write_text("{}")  # finished
    bench.main(args("dense-long", "shallow", "narrow") + ["--lrs", "2e-3", "4e-3"])
    assert swept == [("narrow", [2e-3, 4e-3])]
    assert trained == [("dense-long", ["train.lr=0.008"]), ("narrow", ["train.lr=0.001"])]


def test_a_transfer_curve_starts_where_its_source_model_was_saved(report):
    """A transfer starts from the source's saved (best) model, not from its last step."""
    results = {"steps": 100, "train_tokens": 1000, "best_valid": {"step": 60}}
    other = {"name": "lightformer", "results": {"steps": 10, "train_tokens": 50}}
    assert report.transfer_start([other, {"name": "dense", "results": results}]) == 600
    assert report.transfer_start([{"name": "dense", "results": {**results,
                                                               "best_valid": None}}]) == 1000
    assert report.transfer_start([other]) == 0


@pytest.mark.parametrize("lrs", [["0"], ["-0.001", "2e-3"]])
def test_lrs_must_be_positive(bench, tmp_path, lrs):
    """A rate of 0 would grow the sweep's grid forever (0 x 2 = 0)."""
    with pytest.raises(SystemExit, match="--lrs: every rate must be > 0"):
        bench.main(["run", "mt", "--dense-steps", "10", "--finetune-steps", "2",
                    "--root", str(tmp_path), "--lrs", *lrs])
