"""Table and plot of the distillation runs of benchmarks/distill.sh.

    python benchmarks/report_distill.py RUN_ROOT --out benchmarks/results/distill

Reads every ``RUN_ROOT/NAME-LABEL/`` (results.json, metrics.jsonl) and writes
``OUT.json`` (the figures), ``OUT-table.md`` (a markdown table) and ``OUT.png``: validation
perplexity (the first valid batch of each evaluation, one batch of BATCH x SEQ tokens)
against training tokens, one line per run, and the test-protocol perplexity before
(tokens 0) and after (the run's tokens) as larger markers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read(run: Path) -> dict:
    r = json.loads((run / "results.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    per_step = r["batch_size"] * r["seq_len"]
    r["curve"] = [(row["step"] * per_step, row["ppl"], row["kl"]) for row in rows
                  if row["split"] == "valid"]
    r["name"] = run.name
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distill"))
    args = ap.parse_args()
    runs = [read(d) for d in sorted(args.root.iterdir()) if (d / "results.json").is_file()]
    base = {r["name"].split("-")[0]: r for r in runs if r["before"]}
    lines = ["| student | run | trainable params | train tokens | train s (wall) | tokens/s | "
             "peak RSS GB | test ppl | KL (teacher ‖ model) | top-1 | still improving |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for student, b in base.items():
        lines.append(f"| {student} | before distillation | - | 0 | - | - | - | "
                     f"{b['before']['perplexity']:.1f} | {b['before']['kl']:.3f} | "
                     f"{b['before']['top1']:.3f} | - |")
        for r in (r for r in runs if r["name"].startswith(student + "-")):
            a = r["after"]
            lines.append(
                f"| {student} | {r['name'][len(student) + 1:]} | {r['trainable_params']:,} | "
                f"{r['train_tokens']:,} | {r['train_time_s']:.0f} | "
                f"{r['train_tokens_per_s']:.1f} | {r['peak_mem_bytes'] / 1e9:.1f} | "
                f"{a['perplexity']:.1f} | {a['kl']:.3f} | {a['top1']:.3f} | "
                f"{'yes' if r['still_improving'] else 'no'} (best valid step "
                f"{r['best_valid']['step']}) |")
    teacher = next(iter(base.values()))["teacher_test"] if base else None
    if teacher:
        lines.append(f"| teacher (smollm2-135m) | - | - | - | - | - | - | "
                     f"{teacher['perplexity']:.1f} | 0 | 1 | - |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}-table.md").write_text("\n".join(lines) + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(runs, indent=1) + "\n")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {"svd": "tab:blue", "res3": "tab:red"}
    styles = {"kl-lowrank": "o-", "kl-all": "s--", "lm-all": "^:"}
    for r in runs:
        student, label = r["name"].split("-", 1)
        x, ppl, _ = zip(*r["curve"])
        c = colours.get(student, "grey")
        ax.plot(x, ppl, styles.get(label, "-"), color=c, label=f"{student} {label} (valid)",
                markersize=4)
        ax.plot([r["train_tokens"]], [r["after"]["perplexity"]], "*", color=c, markersize=12)
        if r["before"]:
            ax.plot([0], [r["before"]["perplexity"]], "*", color=c, markersize=12)
    if teacher:
        ax.axhline(teacher["perplexity"], color="black", linestyle="--",
                   label=f"teacher (test) {teacher['perplexity']:.1f}")
    ax.set_yscale("log")
    ax.set_xlabel("training tokens")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title("SmolLM2-135M at keep 0.5: distillation on Brown (CPU; stars: test protocol)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=120)


if __name__ == "__main__":
    main()
