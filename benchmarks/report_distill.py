"""Tables and plot of distillation runs (benchmarks/distill.sh, or encoder runs alike).

    python benchmarks/report_distill.py RUN_ROOT [RUN_ROOT ...] --out benchmarks/results/distill

Reads every ``RUN_ROOT/STUDENT-LABEL/`` that has a results.json (and its metrics.jsonl) and
writes ``OUT.json`` (the figures), ``OUT-table.md`` (one markdown table per task: LM runs by
test perplexity and KL, encoder runs by embedding cosine and hidden-state MSE) and
``OUT.png``: one panel per task, the validation figure of each evaluation (perplexity, or
cosine to the teacher, over the run's ``--eval-batches`` valid batches) against training
tokens, one line per run, and the test-protocol figure before (tokens 0, from the run made
with ``--baseline``) and after (the run's tokens; the best valid checkpoint) as stars.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STYLES = {"kl-lowrank": "o-", "kl-all": "s--", "lm-all": "^:", "lowrank": "o-", "all": "s--"}
COLOURS = ["tab:blue", "tab:red", "tab:green", "tab:purple"]


def read(run: Path) -> dict:
    r = json.loads((run / "results.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    # tokens per step: what the run counted (encoders count real tokens, not padded windows)
    per_step = r["train_tokens"] / r["steps"]
    key = "ppl" if r["task"] == "distill-lm" else "cosine"
    r["curve"] = [(row["step"] * per_step, row[key]) for row in rows if row["split"] == "valid"]
    r["name"] = run.name
    r["student_name"], r["label"] = run.name.split("-", 1)
    return r


def lm_table(runs: list[dict]) -> list[str]:
    lines = ["| student | run | trainable params | train tokens | train s (wall) | tokens/s | "
             "peak RSS GB | test ppl | KL (teacher ‖ model) | top-1 | still improving |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    fmt = lambda q: f"{q['perplexity']:.1f} | {q['kl']:.3f} | {q['top1']:.3f}"  # noqa: E731
    return lines + _rows(runs, fmt, teacher=lambda t: f"{t['perplexity']:.1f} | 0 | 1")


def encoder_table(runs: list[dict]) -> list[str]:
    lines = ["| student | run | trainable params | train tokens | train s (wall) | tokens/s | "
             "peak RSS GB | test cosine to teacher | test MSE | still improving |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    fmt = lambda q: f"{q['cosine']:.4f} | {q['mse']:.4f}"  # noqa: E731
    return lines + _rows(runs, fmt, teacher=lambda t: "1 | 0")


def _rows(runs: list[dict], quality, teacher) -> list[str]:
    """One 'before' row per student (from its --baseline run), then its runs, then the
    teacher."""
    lines, teacher_row = [], None
    for student in dict.fromkeys(r["student_name"] for r in runs):
        mine = [r for r in runs if r["student_name"] == student]
        base = next((r for r in mine if r["before"]), None)
        if base:
            lines.append(f"| {student} | before distillation | - | 0 | - | - | - | "
                         f"{quality(base['before'])} | - |")
            teacher_row = teacher_row or (base["teacher"], base["teacher_test"])
        for r in mine:
            lines.append(
                f"| {student} | {r['label']} | {r['trainable_params']:,} | "
                f"{r['train_tokens']:,} | {r['train_time_s']:.0f} | "
                f"{r['train_tokens_per_s']:.1f} | {r['peak_mem_bytes'] / 1e9:.1f} | "
                f"{quality(r['after'])} | {'yes' if r['still_improving'] else 'no'} (best "
                f"valid step {r['best_valid']['step']}) |")
    if teacher_row:
        name, test = teacher_row
        lines.append(f"| teacher ({name}) | - | - | - | - | - | - | {teacher(test)} | - |")
    return lines


def plot(groups: dict[str, list[dict]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(8 * len(groups), 4.8), squeeze=False)
    for ax, (task, runs) in zip(axes[0], groups.items()):
        lm = task == "distill-lm"
        students = list(dict.fromkeys(r["student_name"] for r in runs))
        figure = "perplexity" if lm else "cosine"
        for j, r in enumerate(runs):
            c = COLOURS[students.index(r["student_name"]) % len(COLOURS)]
            x, y = zip(*r["curve"])
            style = STYLES.get(r["label"], "o-")
            ax.plot(x, y, style, color=c, markersize=4,
                    label=f"{r['student_name']} {r['label']} (valid)")
            # the test figure after: the run's marker, large, nudged right so runs that end
            # at the same tokens stay apart
            ax.plot([r["train_tokens"] * (1 + 0.015 * (j % 3))], [r["after"][figure]],
                    style[0], color=c, markersize=10, markeredgecolor="black")
            if r["before"]:
                ax.plot([0], [r["before"][figure]], "*", color=c, markersize=13,
                        markeredgecolor="black")
        base = next((r for r in runs if r.get("teacher_test")), None)
        if lm:
            ax.set_yscale("log")
            if base:
                t = base["teacher_test"]["perplexity"]
                ax.axhline(t, color="black", ls="--", label=f"teacher (test) {t:.1f}")
        teacher = base["teacher"] if base else "teacher"
        ax.set_xlabel("training tokens")
        ax.set_ylabel("perplexity (log scale)" if lm else "embedding cosine to the teacher")
        ax.set_title(f"students of {teacher} at keep 0.5: lines valid, large markers test "
                     "(star: before, run's marker: after)", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper right" if lm else "lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("roots", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/distill"))
    args = ap.parse_args()
    runs = [read(d) for root in args.roots for d in sorted(root.iterdir())
            if (d / "results.json").is_file()]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r["task"], []).append(r)
    tables = {"distill-lm": lm_table, "distill-encoder": encoder_table}
    text = "\n\n".join("\n".join(tables[task](rs)) for task, rs in groups.items())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}-table.md").write_text(text + "\n")
    Path(f"{args.out}.json").write_text(json.dumps(runs, indent=1) + "\n")
    print(text)
    plot(groups, f"{args.out}.png")


if __name__ == "__main__":
    main()
