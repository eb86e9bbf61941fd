"""The report side of lightformer.py: from its finished runs to the files of ``report``
(``lightformer-TASK.json``, ``-table.md``, ``-pareto.png``, ``-curves.png``).

Apart from the script that trains and measures, so that each stays small; it never imports
lightformer.py (it runs its ``measure`` as a command), so the two import one way only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import config_lr, last_fifth_gain, plain_log_x  # noqa: E402  (beside its shared module)

SCRIPT = Path(__file__).resolve().parent / "lightformer.py"  # its ``measure``: int8 of one run
QUALITY = {"mt": ("bleu", "chrf"), "sum": ("rougeL", "rouge1", "rouge2"),
           "cls": ("acc", "macro_f1")}   # the first of each picks, plots and converges
TRANSFERS = ("lightformer", "transfer-k1")  # the variants that start from the dense run
SCALE = {"acc": 100, "macro_f1": 100}  # fractions shown as percentages
LABELS = {"dense": "dense (the source)", "lightformer": "LightFormer (transfer + share)",
          "dense-long": "dense, same total steps", "transfer-k1": "transfer, no sharing (K=1)",
          "shared-scratch": "shared low rank, no transfer", "residual": "ResidualTransformer",
          "shallow": "dense, fewer layers", "narrow": "dense, narrower"}


def convergence(run: Path, metric: str) -> dict:
    """The valid ``metric`` (higher is better) at the evaluation nearest 80% of the steps and
    the best after it: converged when the last 20% gained less than 2% (relative:
    protocol.last_fifth_gain)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [(r["step"], r[metric]) for r in rows if r.get("split") == "valid" and metric in r]
    if not valid:
        return {"converged": None, "last_20pct_gain": None, "curve": []}
    at80, after, gain = last_fifth_gain(valid, higher_is_better=True)
    return {"valid_at_80pct": at80, "valid_best_after": after,
            "last_20pct_gain": round(gain, 4), "converged": gain < 0.02, "curve": valid}


def cmd_report(args) -> None:
    """The int8 of every finished run of ``args.task`` (measured once, by ``lightformer.py
    measure`` in its own process), then the table, JSON and plots."""
    root, out = Path(args.root) / args.task, Path(args.out)
    metrics = QUALITY[args.task]
    rows = []
    for name in LABELS:
        run = root / name
        done = run / "results.json"
        if not done.is_file():
            continue
        results = json.loads(done.read_text())
        cached = run / "measure-int8.json"  # a finished run is measured once
        if not (cached.is_file() and cached.stat().st_mtime > done.stat().st_mtime):
            proc = subprocess.run([sys.executable, str(SCRIPT), "measure", str(run)],
                                  capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"{run}: measuring it in int8 failed (above)")
            cached.write_text(proc.stdout.strip().splitlines()[-1] + "\n")
        sweep_file = root / "sweep" / f"{name}.json"
        rows.append({"name": name, "label": LABELS[name], "results": results,
                     "int8": json.loads(cached.read_text()),
                     "sweep": json.loads(sweep_file.read_text()) if sweep_file.is_file() else None,
                     "lr": config_lr(run), "transfer": name in TRANSFERS,
                     "convergence": convergence(run, metrics[0])})
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"lightformer-{args.task}"
    Path(f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    Path(f"{stem}-table.md").write_text(table(rows, metrics))
    plots(rows, metrics[0], stem)
    print(table(rows, metrics))


def table(rows: list[dict], metrics: tuple) -> str:
    """One line per run: sizes, test quality fp32 (int8), rate, steps, tokens, time,
    convergence."""
    dense = next((r for r in rows if r["name"] == "dense"), None)
    head = " | ".join(f"test {m} fp32 (int8)" for m in metrics)
    lines = [f"| model | layer params | x fewer | layer MB fp32 / int8 | {head} | lr | steps "
             "| train tokens | train min | converged |",
             "|---|---:|---:|---:|" + "---:|" * len(metrics) + "---:|---:|---:|---:|---|"]
    for r in rows:
        res, q = r["results"], r["int8"]
        ratio = dense["results"]["layer_params"] / res["layer_params"] if dense else float("nan")
        quality = " | ".join(f"{SCALE.get(m, 1) * res[f'test_{m}']:.2f} "
                             f"({SCALE.get(m, 1) * q[f'test_{m}']:.2f})" for m in metrics)
        c = r["convergence"]
        conv = ("-" if c["converged"] is None else
                f"{'yes' if c['converged'] else 'still improving'} "
                f"({100 * c['last_20pct_gain']:+.1f}% in the last 20%)")
        lines.append(
            f"| {r['label']} | {res['layer_params']:,} | {ratio:.2f}x | "
            f"{q['layer_bytes_fp32'] / 1e6:.2f} / {q['layer_bytes_int8'] / 1e6:.2f} | {quality} | "
            f"{r['lr']:g} | {res['steps']:,} | {res['train_tokens'] / 1e6:.1f}M | "
            f"{res['train_time_s'] / 60:.0f} | {conv} |")
    return "\n".join(lines) + "\n"


def plots(rows: list[dict], metric: str, stem: Path) -> None:
    """``STEM-pareto.png`` (test metric against layer bytes, fp32 circle and int8 square per
    model) and ``STEM-curves.png`` (valid metric against training tokens)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = SCALE.get(metric, 1)
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, r in enumerate(rows):
        xs = [r["int8"][f"layer_bytes_{p}"] / 1e6 for p in ("fp32", "int8")]
        ys = [scale * r["results"][f"test_{metric}"], scale * r["int8"][f"test_{metric}"]]
        ax.plot(xs, ys, color=f"C{i}", alpha=0.5, zorder=1)
        ax.scatter(xs[:1], ys[:1], marker="o", color=f"C{i}", zorder=3, label=r["label"])
        ax.scatter(xs[1:], ys[1:], marker="s", color=f"C{i}", zorder=3)
    plain_log_x(ax)
    ax.set_xlabel("layer-stack bytes (MB, log scale)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{stem.name}: quality against bytes (circle fp32, square int8)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(f"{stem}-pareto.png", dpi=130)
    plt.close(fig)

    source = transfer_start(rows)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        curve = r["convergence"]["curve"]
        if curve:
            per_step = r["results"]["train_tokens"] / r["results"]["steps"]
            offset = source if r["transfer"] else 0  # a transfer goes on from its source's model
            steps, values = zip(*curve)
            ax.plot([(offset + s * per_step) / 1e6 for s in steps], [scale * v for v in values],
                    marker=".", label=r["label"])
    ax.set_xlabel("training tokens seen (millions; a transfer goes on from its source's "
                  "saved model)")
    ax.set_ylabel(f"valid {metric} (fixed subset)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{stem}-curves.png", dpi=130)
    plt.close(fig)


def transfer_start(rows: list[dict]) -> float:
    """Where a transfer's curve starts: the training tokens dense's saved model had seen --
    its best checkpoint's step (what ``model/`` holds, what a transfer starts from) at the
    run's tokens per step; 0 without a dense row."""
    dense = next((r["results"] for r in rows if r["name"] == "dense"), None)
    if dense is None:
        return 0.0
    step = (dense.get("best_valid") or {}).get("step") or dense["steps"]
    return dense["train_tokens"] * step / dense["steps"]
