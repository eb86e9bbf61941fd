"""recipes/compare.py: runs configs (here through a fake launcher), skips finished runs,
trains several at once with --jobs, and writes the table, JSON and Pareto plot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPARE = ROOT / "recipes" / "compare.py"

# Stands in for `python -m layershare`: `train --config C --out O [--set ...] [--quiet]`
# writes what a finished run leaves behind; a config named "bad" fails.
FAKE = '''
import json, sys, time
from pathlib import Path
args = sys.argv[1:]
cfg, out = Path(args[args.index("--config") + 1]), Path(args[args.index("--out") + 1])
time.sleep({"slow": 3.0, "bad": 0.0}.get(cfg.stem, 0.3))
if cfg.stem == "bad":
    print("boom"); sys.exit(3)
out.mkdir(parents=True)
(out / "config.yaml").write_text("model: {layers: 4}\\n")
per_layer = 1000
unique = {"dense": 4, "tied": 2, "dlt": 1}.get(cfg.stem, 4)
final = {"final_tokens_per_s": 1100.0} if cfg.stem != "slow" else {}
if cfg.stem == "dlt":
    final["final_peak_mem_bytes"] = 2 * 2**20
(out / "results.json").write_text(json.dumps({
    "method": cfg.stem, "unique_params": 5000 + unique * per_layer,
    "layer_params": unique * per_layer, "dense_layer_params": 4 * per_layer, "layers": 4,
    "test_ppl": {"dense": 10.0, "tied": 11.0, "dlt": 12.5}.get(cfg.stem, 9.0),
    "train_tokens_per_s": 1000.0, "peak_mem_bytes": 3 * 2**20, **final, "argv": args}))
'''


@pytest.fixture
def fake(tmp_path):
    launcher = tmp_path / "fake_layershare.py"
    launcher.write_text(FAKE)
    configs = []
    for name in ("dense", "tied", "dlt", "bad", "slow", "later"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"model": {"layers": 4}}))
        configs.append(path)
    return f"{sys.executable} {launcher}", configs


def compare(launcher, configs, out, *extra):
    cmd = [sys.executable, str(COMPARE), "--out", str(out), "--launcher", launcher,
           *map(str, configs), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_table_columns_and_outputs(fake, tmp_path):
    launcher, configs = fake
    out = tmp_path / "cmp"
    slow, dense, tied, dlt = configs[4], configs[0], configs[1], configs[2]
    done = compare(launcher, [slow, dense, tied, dlt], out, "--jobs", "3", "--set", "train.steps=7")
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())
    # config order, although "slow" finished last
    assert [r["config"] for r in rows] == ["slow", "dense", "tied", "dlt"]
    assert [r["unique_layers_equiv"] for r in rows] == [4.0, 4.0, 2.0, 1.0]
    argv = rows[0]["argv"]
    assert argv[argv.index("--set") + 1] == "train.steps=7" and "--quiet" in argv
    table = (out / "results.md").read_text()
    assert "--jobs 3" in table and "last 10%" in table
    # last-10% figures per row; "-" where a run has none
    assert "| dlt | dlt | 6,000 | 1,000 | 1.0 | 4.00x | 12.500 | 1,000 | 3 | 1,100 | 2 |" in table
    assert "| tied | tied | 7,000 | 2,000 | 2.0 | 2.00x | 11.000 | 1,000 | 3 | 1,100 | - |" in table
    assert "| 3 | - | - |" in table  # slow: no window figures at all
    assert (out / "pareto.png").stat().st_size > 1000
    assert (out / "dense.log").read_text().startswith("$ ")
    # a finished comparison is reused, not retrained
    again = compare(launcher, configs[:3], out)
    assert again.returncode == 0 and "$" not in again.stdout


def test_unique_layers_of_old_translation_results_count_both_stacks(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("compare", COMPARE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "config.yaml").write_text("model: {layers: 3, decoder_layers: 5}\n")
    assert module.stacked_layers({"task": "translation"}, tmp_path) == 8
    assert module.stacked_layers({"task": "lm"}, tmp_path) == 3
    assert module.stacked_layers({"task": "translation", "layers": 6}, tmp_path) == 6


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_failed_run_is_one_clear_error(fake, tmp_path, jobs):
    launcher, configs = fake
    out = tmp_path / "cmp"
    slow, bad, later = configs[4], configs[3], configs[5]
    done = compare(launcher, [slow, bad, later], out, "--jobs", jobs)
    assert done.returncode != 0
    assert "bad failed (exit 3)" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "results.md").exists()
    assert (out / "slow" / "results.json").exists()  # started before the failure: finished
    assert not (out / "later").exists()  # after the failure nothing starts
    if jobs == "2":  # reported at once, not after the slow run
        assert "waiting for the runs already started" in done.stderr


def test_configs_with_the_same_name_are_refused(fake, tmp_path):
    launcher, configs = fake
    other = tmp_path / "more" / "dense.yaml"
    other.parent.mkdir()
    other.write_text("model: {layers: 4}\n")
    done = compare(launcher, [configs[0], other], tmp_path / "cmp")
    assert done.returncode != 0 and "share a file name" in done.stderr
