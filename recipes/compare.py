"""Train several configs on the same data and compare them side by side.

Each config runs as ``layershare train --config CFG --set ... --out OUT/NAME`` (skipped when
``OUT/NAME/results.json`` exists, so an interrupted comparison resumes), then one table
(stdout and ``OUT/results.md``), ``OUT/results.json`` and a Pareto plot
``OUT/pareto.png``: test quality against unique layer-stack parameters, dense baselines in
black. The anchors' rule applies: a shared model is only worth its name if it beats the
dense models of the same or smaller unique size.

    python recipes/compare.py --out runs/demo configs/lm-brown-dense.yaml \\
        configs/lm-brown-residual.yaml --set train.steps=300
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

# the task's headline metric first: translation runs report a perplexity too
METRICS = (("test_bleu", "test BLEU", True), ("test_acc", "test accuracy", True),
           ("test_ppl", "test perplexity", False))


def run(config: Path, out: Path, overrides: list[str], launcher: list[str]) -> dict:
    result = out / "results.json"
    if not result.exists():
        cmd = [*launcher, "train", "--config", str(config), "--out", str(out)]
        for item in overrides:
            cmd += ["--set", item]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return {"config": config.stem, **json.loads(result.read_text())}


def metric_of(rows: list[dict]) -> tuple[str, str, bool]:
    for key, label, higher in METRICS:
        if all(key in r for r in rows):
            return key, label, higher
    raise SystemExit("compare: the runs report no common test metric")


def table(rows: list[dict], key: str, label: str) -> str:
    lines = [f"| config | method | params | unique layer params | layer compression | {label} "
             "| train tokens/s | peak memory (MiB) |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r.get('method', '?')} | {r['unique_params']:,} | "
            f"{r['layer_params']:,} | {r['dense_layer_params'] / r['layer_params']:.2f}x | "
            f"{r[key]:.3f} | {r['train_tokens_per_s']:,.0f} | {r['peak_mem_bytes'] / 2**20:,.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict], key: str, label: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        dense = r.get("method", "dense") == "dense"
        ax.plot(r["layer_params"] / 1e6, r[key], "ks" if dense else "bo")
        ax.annotate(r["config"], (r["layer_params"] / 1e6, r[key]), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xlabel("unique layer-stack parameters (millions)")
    ax.set_ylabel(label)
    ax.set_title("quality vs unique layer parameters (dense = black squares)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every config (repeatable)")
    parser.add_argument("--launcher", default=f"{sys.executable} -m layershare",
                        help="how to start layershare, e.g. 'torchrun --nproc_per_node=2 -m layershare'")
    args = parser.parse_args(argv)
    rows = [run(cfg, args.out / cfg.stem, args.set, args.launcher.split()) for cfg in args.configs]
    key, label, higher = metric_of(rows)
    text = table(rows, key, label)
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = " ".join(f"--set {s}" for s in args.set)
    command = f"python recipes/compare.py --out {args.out} {' '.join(map(str, args.configs))} {overrides}"
    (args.out / "results.md").write_text(f"# Side by side\n\nCommand: `{command.strip()}`\n\n{text}\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, key, label, args.out / "pareto.png")
    print(f"\n{text}\n\n{'higher' if higher else 'lower'} is better; wrote {args.out}/results.md, "
          "results.json, pareto.png")


if __name__ == "__main__":
    main()
