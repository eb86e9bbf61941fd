"""Table and Pareto plot of benchmarks/compress_pretrained.py's results.jsonl.

    python benchmarks/report_pretrained.py runs/pretrained/results.jsonl runs/pretrained
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def write_report(log: Path, out: Path, args=None) -> str:
    rows = [json.loads(line) for line in Path(log).read_text().splitlines()]
    last = {}
    for row in rows:  # a re-run variant: its latest result counts
        last[(row["variant"], row["keep_asked"])] = row
    rows = list(last.values())
    original = next((r for r in rows if r["variant"] == "original"), {})
    encoder = "cosine" in original
    if encoder:
        head = "| keep asked | method | kept | cosine to original | probe accuracy |"
        def cells(r):
            return f"{r['cosine']:.4f} | {r['probe_accuracy']:.4f}"
        key = lambda r: -r.get("cosine", -1)  # noqa: E731
    else:
        base = original.get("perplexity", float("nan"))
        head = "| keep asked | method | kept | perplexity | x original |"
        def cells(r):
            return f"{r['perplexity']:.2f} | {r['perplexity'] / base:.2f}"
        key = lambda r: r.get("perplexity", float("inf"))  # noqa: E731
    lines = [head + " compress s |", "|" + " --- |" * head.count("|")]
    if original:
        lines.append(f"| - | original | 1.000 | {cells(original)} | - |")
    keeps = sorted({r["keep_asked"] for r in rows if r["keep_asked"] is not None}, reverse=True)
    for keep in keeps:
        for r in sorted((r for r in rows if r["keep_asked"] == keep), key=key):
            if "error" in r:
                lines.append(f"| {keep} | {r['label']} | - | not reachable: {r['error']} |" +
                             " |" * (head.count("|") - 4))
                continue
            lines.append(f"| {keep} | {r['label']} | {r['keep']:.3f} | {cells(r)} | "
                         f"{r['compress_seconds']:.0f} |")
    table = "\n".join(lines)
    out = Path(out)
    (out / "results.md").write_text(table + "\n")
    metric = "cosine" if encoder else "perplexity"
    _plot(rows, original.get(metric, float("nan")), out / "pareto.png", metric)
    print(table)
    return table


def _plot(rows, base, path: Path, metric: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    by_variant = {}
    for r in rows:
        if r["variant"] != "original" and "error" not in r:
            by_variant.setdefault(r["label"], []).append((r["keep"], r[metric]))
    markers = "osD^v<>phX*"
    for i, (label, points) in enumerate(sorted(by_variant.items())):
        points.sort()
        ax.plot(*zip(*points), marker=markers[i % len(markers)], color=plt.cm.tab20(i % 20),
                label=label)
    ax.axhline(base, color="k", ls="--", lw=1, label=f"original ({base:.1f})")
    ax.set_xlabel("fraction of the layer stack's matrix parameters kept")
    if metric == "perplexity":
        ax.set_yscale("log")
        ax.set_ylabel("perplexity, Brown test, 16 x 512 tokens (log scale)")
    else:
        ax.set_ylabel("cosine of sentence embeddings to the original (500 Brown test sentences)")
    ax.set_title("Post-training compression, no fine-tuning")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no overlap
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    write_report(Path(sys.argv[1]), Path(sys.argv[2]))
