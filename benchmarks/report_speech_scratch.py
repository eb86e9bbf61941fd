"""The report side of speech_scratch.py: from its finished runs to the files of ``report``
(``NAME.json``, ``NAME-table.md``, ``NAME-pareto.png``, ``NAME-curves.png``) and the PNG of
``trend``.

Apart from the script that trains and measures, so that each stays small; it never imports
speech_scratch.py: the script hands over what only it knows (its variants' labels, the
command line of its ``measure``), so the two import one way only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import config_lr, last_fifth_gain, plain_log_x  # noqa: E402  (beside its shared module)


def convergence(run: Path) -> dict:
    """Valid WER at the evaluation nearest 80% of the steps and the best after it:
    converged when the last 20% improved it by less than 2% (relative)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [(r["step"], r["wer"]) for r in rows if r.get("split") == "valid"]
    at80, after, gain = last_fifth_gain(valid, higher_is_better=False)
    return {"valid_wer_at_80pct": at80, "valid_wer_best_after": after,
            "last_20pct_gain": round(gain, 4), "converged": gain < 0.02,
            "curve": valid}


def cmd_report(args, labels: dict[str, str], measure: list[str]) -> None:
    """``report``: every finished run of ``labels`` (variant name -> label, in the table's
    order) under ``args.root``, each model measured once (``measure``: the command line of
    speech_scratch.py's ``measure``, which gets the model and the precision appended, in its
    own process so that its peak RSS is its own) and its figures cached beside it."""
    root, out = Path(args.root), Path(args.out)
    rows = []
    for name, label in labels.items():
        run = root / name
        if not (run / "results.json").is_file():
            continue
        results = json.loads((run / "results.json").read_text())
        sweep_file = root / "sweep" / f"{name}.json"
        row = {"name": name, "label": label, "results": {
                   k: results[k] for k in ("layer_params", "unique_params", "train_tokens",
                                           "train_time_s", "steps", "best_valid")},
               "sweep": json.loads(sweep_file.read_text()) if sweep_file.is_file() else None,
               "convergence": convergence(run), "lr": config_lr(run)}
        for precision in ("fp32", "int8"):
            cached = run / f"measure-{precision}.json"  # a finished run is measured once
            if cached.is_file() and cached.stat().st_mtime > (run / "results.json").stat().st_mtime:
                row[precision] = json.loads(cached.read_text())
                continue
            argv = measure + [str(run / "model"), "--precision", precision] + (
                ["--data-dir", args.data_dir] if args.data_dir else [])
            if args.wrap:
                argv = [args.wrap] + argv
            proc = subprocess.run(argv, capture_output=True, text=True, check=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            row[precision] = json.loads(proc.stdout.strip().splitlines()[-1])
            cached.write_text(json.dumps(row[precision]) + "\n")
            print(name, precision, {k: v["wer"] for k, v in row[precision].items()
                                    if isinstance(v, dict)}, flush=True)
        rows.append(row)
    if args.rtf:  # side-by-side speeds (cmd_rtf) replace those measured one model at a time
        measured = json.loads(Path(args.rtf).read_text())["runs"]
        side = {Path(run).resolve(): v for run, v in measured.items()}
        for row in rows:  # one column, one kind of measurement: every row side by side
            run = (root / row["name"]).resolve()
            if run not in side:
                raise SystemExit(f"{args.rtf} has no side-by-side speed of {run}: measure "
                                 "every run of the report with `rtf` together")
            row["rtf_side_by_side"] = side[run]
        dense = next((r for r in rows if r["name"] == "dense12"), rows[0])
        for row in rows:
            row["rtf_side_by_side"]["vs_dense"] = (row["rtf_side_by_side"]["real_time_factor"]
                                                   / dense["rtf_side_by_side"]["real_time_factor"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / f"{args.name}-table.md").write_text(table(rows))
    plots(rows, out, args.name)
    print(table(rows))


def table(rows: list[dict]) -> str:
    dense = next((r for r in rows if r["name"] == "dense12"), None)
    lines = ["| model | enc.-layer params | x fewer | layer MB fp32 / int8 "
             "| test WER % fp32 (int8) "
             "| test-voices WER % | LibriVox WER % | lr | frames seen | train min "
             "| RTF 1 thread (vs dense) "
             "| peak RSS MiB | converged |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        f, q, res = r["fp32"], r["int8"], r["results"]
        ratio = dense["results"]["layer_params"] / res["layer_params"] if dense else float("nan")
        c = r["convergence"]
        lines.append(
            f"| {r['label']} | {res['layer_params']:,} | {ratio:.2f}x | "
            f"{f['layer_bytes_fp32'] / 1e6:.2f} / {f['layer_bytes_int8'] / 1e6:.2f} | "
            f"{f['espeak-asr/test']['wer']:.2f} ({q['espeak-asr/test']['wer']:.2f}) | "
            f"{f['espeak-asr/test-voices']['wer']:.2f} "
            f"({q['espeak-asr/test-voices']['wer']:.2f}) | "
            f"{f['librivox']['wer']:.1f} | {r['lr']:g} | {res['train_tokens'] / 1e6:.1f}M | "
            f"{res['train_time_s'] / 60:.0f} | {rtf(r)} | "
            f"{f['peak_rss_bytes'] / 2**20:.0f} | "
            f"{'yes' if c['converged'] else 'still improving'} "
            f"({100 * c['last_20pct_gain']:.1f}% in the last 20%) |")
    return "\n".join(lines) + "\n"


def rtf(row: dict) -> str:
    """The real-time factor; where it was measured side by side, with its ratio to dense 12's
    (measured in the same run)."""
    side = row.get("rtf_side_by_side")
    if side:
        return f"{side['real_time_factor']:.4f} ({side['vs_dense']:.2f}x)"
    return f"{row['fp32']['espeak-asr/test']['real_time_factor']:.4f}"


def plots(rows: list[dict], out: Path, name: str = "speech-scratch") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for i, r in enumerate(rows):  # one colour per model: circle fp32, square int8, joined
        color = f"C{i}"
        xs = [r[p][f"layer_bytes_{p}"] / 1e6 for p in ("fp32", "int8")]
        ys = [r[p]["espeak-asr/test"]["wer"] for p in ("fp32", "int8")]
        ax.plot(xs, ys, color=color, alpha=0.5, zorder=1)
        ax.scatter(xs[:1], ys[:1], marker="o", color=color, zorder=3, label=r["label"])
        ax.scatter(xs[1:], ys[1:], marker="s", color=color, zorder=3)
    plain_log_x(ax)
    ax.set_xlabel("encoder-layer bytes (MB, log scale)")
    ax.set_ylabel("test WER % (espeak-asr test, training voices)")
    ax.set_title("Speech recognisers trained from scratch: WER against bytes "
                 "(circle fp32, square int8)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(out / f"{name}-pareto.png", dpi=130)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 5))
    for r in rows:
        per_step = r["results"]["train_tokens"] / r["results"]["steps"]
        steps, wers = zip(*r["convergence"]["curve"])
        ax.plot([s * per_step / 1e6 for s in steps], wers, marker=".", label=r["label"])
    ax.set_xlabel("input frames seen (millions, 10 ms each)")
    ax.set_ylabel("valid WER % (the fixed valid subset)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{name}-curves.png", dpi=130)
    plt.close(fig)


def cmd_trend(args) -> None:
    """Test WER against the protocol's length (frames seen), one line per variant, from the
    JSONs of ``report`` for protocols of different length: does a gap close with training?"""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list] = {}
    for report in args.reports:
        for r in json.loads(Path(report).read_text()):
            lines.setdefault(r["label"], []).append(
                (r["results"]["train_tokens"] / 1e6, r["fp32"]["espeak-asr/test"]["wer"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in lines.items():
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("input frames seen by the end of the run (millions; one run per point)")
    ax.set_ylabel("test WER % (espeak-asr test)")
    ax.set_title("Every protocol's final test WER: does a gap close with training?", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(json.dumps(lines, indent=1))


