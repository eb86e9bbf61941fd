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
if cfg.stem == "bad":
    print("boom"); sys.exit(3)
layers = {"dense": 4, "tied": 4, "dlt": 4}[cfg.stem]
out.mkdir(parents=True)
(out / "config.yaml").write_text(f"model: {{layers: {layers}}}\\n")
per_layer = 1000
unique = {"dense": 4, "tied": 2, "dlt": 1}[cfg.stem]
time.sleep(0.5)
(out / "results.json").write_text(json.dumps({
    "method": cfg.stem, "unique_params": 5000 + unique * per_layer,
    "layer_params": unique * per_layer, "dense_layer_params": layers * per_layer,
    "test_ppl": {"dense": 10.0, "tied": 11.0, "dlt": 12.5}[cfg.stem],
    "train_tokens_per_s": 1000.0, "peak_mem_bytes": 3 * 2**20,
    "final_tokens_per_s": 1100.0, "final_peak_mem_bytes": 2 * 2**20,
    "argv": args}))
'''


@pytest.fixture
def fake(tmp_path):
    launcher = tmp_path / "fake_layershare.py"
    launcher.write_text(FAKE)
    configs = []
    for name in ("dense", "tied", "dlt", "bad"):
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
    done = compare(launcher, configs[:3], out, "--jobs", "3", "--set", "train.steps=7")
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())
    assert [r["config"] for r in rows] == ["dense", "tied", "dlt"]  # config order, not finish order
    assert [r["unique_layers_equiv"] for r in rows] == [4.0, 2.0, 1.0]
    argv = rows[0]["argv"]
    assert argv[argv.index("--set") + 1] == "train.steps=7" and "--quiet" in argv
    table = (out / "results.md").read_text()
    assert "--jobs 3" in table and "last 10%" in table
    assert "| dlt | dlt | 6,000 | 1,000 | 1.0 | 4.00x | 12.500 | 1,000 | 3 | 1,100 | 2 |" in table
    assert (out / "pareto.png").stat().st_size > 1000
    assert (out / "dense.log").exists()
    # a finished comparison is reused, not retrained
    again = compare(launcher, configs[:3], out)
    assert again.returncode == 0 and "$" not in again.stdout


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_failed_run_is_one_clear_error(fake, tmp_path, jobs):
    launcher, configs = fake
    out = tmp_path / "cmp"
    # serially, the run after the failed one never starts
    done = compare(launcher, [configs[3], configs[0]], out, "--jobs", jobs)
    assert done.returncode != 0
    assert "bad failed (exit 3)" in done.stderr and "Traceback" not in done.stderr
    assert not (out / "results.md").exists()
    assert (out / "dense" / "results.json").exists() == (jobs == "2")


def test_configs_with_the_same_name_are_refused(fake, tmp_path):
    launcher, configs = fake
    other = tmp_path / "more" / "dense.yaml"
    other.parent.mkdir()
    other.write_text("model: {layers: 4}\n")
    done = compare(launcher, [configs[0], other], tmp_path / "cmp")
    assert done.returncode != 0 and "share a file name" in done.stderr
