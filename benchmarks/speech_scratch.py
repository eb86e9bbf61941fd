"""Speech recognisers trained from scratch: ResidualTransformer against its honest baselines.

    OMP_NUM_THREADS=1 python benchmarks/speech_scratch.py run dense12 residual --root runs/asr
    python benchmarks/speech_scratch.py report --root runs/asr --out benchmarks/results

``run`` trains each named variant in turn: first the learning-rate sweep (the three values
of ``LRS``, each for a fifth of the steps with the schedule scaled to match, scored by the
valid WER of its last evaluation), then the full run at the sweep's best rate. Every run
is an ordinary ``layershare train`` into ``ROOT/sweep/NAME-lrX`` or ``ROOT/NAME``, so
running the same command again resumes where it stopped. Every variant sees the same data,
the same buckets in the same order, the same steps and schedule; only the model and the
rate differ.

``report`` writes ``speech-scratch.md`` (table), ``speech-scratch.json``,
``speech-scratch-pareto.png`` (test WER against encoder-layer bytes) and
``speech-scratch-curves.png`` (valid WER against frames seen).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
LRS = (7e-4, 1.5e-3, 3e-3)
SWEEP_FRACTION = 5
# name -> (config, --set overrides, label)
VARIANTS = {
    "dense12": ("asr-espeak-dense.yaml", [], "dense 12 layers"),
    "residual": ("asr-espeak-residual.yaml", [], "residual K=4 r=6 + diag"),
    "res-shared": ("asr-espeak-residual.yaml", ["share.rank=0", "share.diag=false"],
                   "residual: shared only"),
    "res-shared-diag": ("asr-espeak-residual.yaml", ["share.rank=0"], "residual: shared + diag"),
    "res-shared-lowrank": ("asr-espeak-residual.yaml", ["share.diag=false"],
                           "residual: shared + low rank"),
    "dense4": ("asr-espeak-dense-4l.yaml", [], "dense 4 layers"),
    "narrow12": ("asr-espeak-dense-narrow.yaml", [], "dense 12 narrow (d=80)"),
    "tied2": ("asr-espeak-tied.yaml", [], "tied K=2 (6 blocks x 2)"),
    "dense6": ("asr-espeak-dense-6l.yaml", [], "dense 6 layers"),
}


def config_steps(config: str) -> dict:
    import yaml

    train = yaml.safe_load((CONFIGS / config).read_text())["train"]
    return {k: train[k] for k in ("steps", "warmup", "eval_every", "save_every")}


def train(config: str, overrides: list[str], out: Path, extra: list[str]) -> dict:
    """One ``layershare train`` (resumed if ``out`` holds an earlier start); its results."""
    argv = [sys.executable, "-m", "layershare.cli", "train", "--config", str(CONFIGS / config),
            "--out", str(out), "--quiet"]
    for item in overrides + extra:
        argv += ["--set", item]
    print(" ".join(argv[2:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    subprocess.run(argv, check=True, env=env)
    return json.loads((out / "results.json").read_text())


def sweep(name: str, root: Path, extra: list[str]) -> float:
    """The rate of ``LRS`` whose short run ends with the lowest valid WER."""
    config, overrides, _ = VARIANTS[name]
    s = {k: max(v // SWEEP_FRACTION, 1) for k, v in config_steps(config).items()}
    short = [f"train.steps={s['steps']}", f"train.warmup={s['warmup']}",
             f"train.eval_every={s['steps'] // 2}", f"train.save_every={s['save_every']}"]
    scores = {}
    for lr in LRS:
        results = train(config, overrides, root / "sweep" / f"{name}-lr{lr:g}",
                        short + [f"train.lr={lr}"] + extra)
        scores[lr] = last_valid(root / "sweep" / f"{name}-lr{lr:g}")
    best = min(scores, key=scores.get)
    (root / "sweep" / f"{name}.json").write_text(json.dumps(
        {"lrs": {f"{k:g}": v for k, v in scores.items()}, "best": best}, indent=1) + "\n")
    print(f"{name}: valid WER by lr {scores}; using {best:g}", flush=True)
    return best


def last_valid(run: Path) -> float:
    """The valid WER of the run's last evaluation (metrics.jsonl)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in rows if r.get("split") == "valid"]
    return float(valid[-1]["wer"])


def cmd_run(args) -> None:
    for name in args.variants:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    extra = [f"data.dir={args.data_dir}"] if args.data_dir else []
    for name in args.variants:
        config, overrides, _ = VARIANTS[name]
        lr = args.lr if args.lr else sweep(name, root, extra)
        train(config, overrides, root / name, [f"train.lr={lr}"] + extra)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="sweep the rate, then train, each variant in turn")
    r.add_argument("variants", nargs="+", help=", ".join(VARIANTS))
    r.add_argument("--root", default="runs/asr")
    r.add_argument("--data-dir", default=None, help="where espeak-asr is prepared")
    r.add_argument("--lr", type=float, default=None, help="skip the sweep, use this rate")
    r.set_defaults(func=cmd_run)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
