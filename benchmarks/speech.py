"""Whisper tiny.en with a smaller encoder: WER against encoder parameters.

    PYTHONPATH=src python benchmarks/speech.py --limit 30 --out benchmarks/results
    PYTHONPATH=src python benchmarks/speech.py --limit 30 --reuse --calib-frames 48000 \
        --checkpoint "distilled ...=runs/whisper-distil/model" --out benchmarks/results
    PYTHONPATH=src python benchmarks/speech.py --limit 30 --reuse --stacks all \
        --out benchmarks/results

With ``--stacks all`` both stacks are compressed, one rank for every matrix of both, the
target counting both stacks' layer parameters, and the decoder calibrated on the
teacher-forced transcripts of the same utterances (CONFIGS_ALL).

Compresses the encoder stack only (``stacks="encoder"``) of ``whisper-tiny-en`` with residual
(K=2, K=4) and lowrank (Basis Sharing K=2; per-layer SVD-LLM K=1) at about 1.5x, 2x and 3x
fewer encoder-layer parameters, the rank of each found by bisection on ``layershare.count``
(the same rank for the data-free and the calibrated fit of one configuration). Data-free rows:
``layershare.convert`` (SVD of the weights). Calibrated rows: ``layershare.compress.compress``
on the log-mel features of ``--calib-frames / 1500`` espeak-en *train* utterances (evenly
spaced; compress/speech.py), sequential, no training. ``--checkpoint LABEL=DIR`` adds saved
checkpoints (a distilled encoder). Every model decodes the same utterances (``--limit``
utterances evenly spaced over the espeak-en test split, and the five LibriVox clips), greedy,
at most 128 new tokens. ``--reuse`` keeps the compressed rows already in ``speech.json``
(same label) instead of decoding them again, and writes the stored rows it did not measure
back with the new ones; the original is always decoded again, so each run shows that its
data gives the stored figures. Writes ``speech.json`` (with every
hypothesis), ``speech-table.md`` and ``speech.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import layershare
from layershare.compress import compress
from layershare.compress.speech import speech_batches, spread, train_utterances
from layershare.evaluate.wer import encoder_params, evaluate_wer, load_speech_model, test_utterances

# (label, method, K, target encoder-layer compression, fit); None: the original
CONFIGS = [("original", None, None, None, None),
           ("residual K=2", "residual", 2, 1.5, "data-free"),
           ("residual K=2", "residual", 2, 1.95, "data-free"),  # 2x leaves rank 0: S + diag
           ("residual K=4", "residual", 4, 2.0, "data-free"),
           ("residual K=4", "residual", 4, 3.0, "data-free"),
           ("lowrank K=2", "lowrank", 2, 1.5, "data-free"),
           ("lowrank K=2", "lowrank", 2, 2.0, "data-free"),
           ("lowrank K=2", "lowrank", 2, 3.0, "data-free"),
           ("lowrank K=1", "lowrank", 1, 1.5, "calibrated"),
           ("lowrank K=1", "lowrank", 1, 2.0, "calibrated"),
           ("lowrank K=1", "lowrank", 1, 3.0, "calibrated"),
           ("residual K=2", "residual", 2, 1.5, "calibrated"),
           ("residual K=2", "residual", 2, 1.95, "calibrated"),
           ("residual K=4", "residual", 4, 1.5, "calibrated"),
           ("residual K=4", "residual", 4, 2.0, "calibrated"),
           ("residual K=4", "residual", 4, 3.0, "calibrated")]

# --stacks all: both stacks, one rank for every matrix of both; the target counts both stacks'
# layer parameters. Residual K=2 cannot reach 2x (sharing alone gives 2x), hence 1.95x.
CONFIGS_ALL = [("original", None, None, None, None),
               ("residual K=2", "residual", 2, 1.95, "data-free"),
               ("residual K=4", "residual", 4, 2.0, "data-free"),
               ("residual K=4", "residual", 4, 3.0, "data-free"),
               ("lowrank K=2", "lowrank", 2, 2.0, "data-free"),
               ("lowrank K=2", "lowrank", 2, 3.0, "data-free"),
               ("residual K=2", "residual", 2, 1.95, "calibrated"),
               ("residual K=4", "residual", 4, 2.0, "calibrated"),
               ("residual K=4", "residual", 4, 3.0, "calibrated"),
               ("lowrank K=1", "lowrank", 1, 2.0, "calibrated"),
               ("lowrank K=1", "lowrank", 1, 3.0, "calibrated")]


def converted(base, method: str, k: int, rank: int, stacks: str, init: str = "mean"):
    model = copy.deepcopy(base)
    layershare.convert(model, method=method, group_size=k, rank=rank, stacks=stacks, init=init)
    return model


def rank_for(base, method: str, k: int, target: float, stacks: str) -> tuple[int, float]:
    """The rank whose layer compression (of the converted stacks) is closest to ``target``
    (it falls with rank)."""
    # the counts depend on shapes only: "scratch" skips the SVDs
    ratio = lambda r: layershare.count(  # noqa: E731
        converted(base, method, k, r, stacks, "scratch")).compression
    lo, hi = (0 if method == "residual" else 1), 384
    if ratio(lo) < target:
        return lo, ratio(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ratio(mid) >= target else (lo, mid)
    best = min((lo, hi), key=lambda r: abs(ratio(r) - target))
    return best, ratio(best)


def calibrated(base, method: str, k: int, rank: int, batches: list[dict], stacks: str):
    model = copy.deepcopy(base)
    result = compress(model, batches, method=method, group_size=k, rank=rank, stacks=stacks,
                      progress=False)
    return model, result.seconds, [list(e) for e in result.error_table()]


def row_label(label: str, fit: str | None, rank, ratio: float, stacks: str) -> str:
    if fit is None:
        return label
    return (f"{label} r={rank} ({ratio:.2f}x)" + (", calibrated" if fit == "calibrated" else "")
            + (", both stacks" if stacks == "all" else ""))


def plot(rows: list[dict], path: Path) -> None:
    """Two panels (espeak-en, LibriVox), WER against encoder parameters. Colour: the method;
    marker: the fit; hollow: both stacks compressed. Each point carries its row number (the key
    under the axes), nudged apart where points crowd (``_place_labels``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colour = {"original": "black", "residual": "tab:blue", "lowrank": "tab:orange"}
    markers = {"data-free": "o", "calibrated": "s", "distilled": "*", None: "D"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    for ax, key, title in ((axes[0], "espeak_wer", "espeak-en test"),
                           (axes[1], "librivox_wer", "LibriVox (5 clips)")):
        xs = [r["encoder_params"] / 1e6 for r in rows]
        ys = [r[key] for r in rows]
        for i, r in enumerate(rows):
            fit = r.get("fit", None if r["method"] == "original" else "data-free")
            c = colour.get(r["method"], "grey")
            hollow = r.get("stacks") == "all"
            ax.scatter([xs[i]], [ys[i]], marker=markers.get(fit, "o"), zorder=3,
                       s=90 if fit == "distilled" else 36, edgecolors=c,
                       facecolors="none" if hollow else c, linewidths=1.3)
        front, best = [], float("inf")  # Pareto front: fewer parameters and lower WER
        for x, y in sorted(zip(xs, ys)):
            if y < best:
                front.append((x, y))
                best = y
        ax.plot(*zip(*front), color="grey", lw=1, ls="--", zorder=2)
        ax.set_yscale("log")
        ax.set_xlabel("encoder parameters (millions, conv front end and positions included)")
        ax.set_ylabel("WER % (log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        _place_labels(ax, xs, ys)
    handles = [Line2D([], [], ls="", marker="o", color=c, label=m) for m, c in colour.items()]
    handles += [Line2D([], [], ls="", marker=mk, color="grey", label=fit or "original")
                for fit, mk in markers.items() if fit]
    handles += [Line2D([], [], ls="", marker="o", markerfacecolor="none", color="grey",
                       label="both stacks (hollow)"),
                Line2D([], [], color="grey", ls="--", label="Pareto front")]
    axes[1].legend(handles=handles, loc="upper right", fontsize=8)
    key = "   ".join(f"{i}: {r['label']}" for i, r in enumerate(rows))
    lines = _wrap(key, 170)
    fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=7.5)
    fig.tight_layout(rect=(0, 0.02 + 0.024 * len(lines), 1, 1))  # room for the key
    fig.savefig(path, dpi=120)


def _place_labels(ax, xs: list[float], ys: list[float], step: float = 10.0) -> None:
    """Number the points. Points that coincide on the page (within 6 points: many broken
    models sit at exactly 100% WER) share one label, their numbers joined; a label that
    would cover a label already placed or any marker moves up or down in steps of ``step``
    points, with a thin line to its point. Computed in points after the limits are fixed
    (any dpi); tests/test_benchmark_reports.py checks that no two labels overlap."""
    ax.figure.canvas.draw()  # fixes the limits and the transform
    to_pt = lambda xy: ax.transData.transform(xy) * 72 / ax.figure.dpi  # noqa: E731
    clusters: list[tuple[tuple[float, float], list[int], list[float]]] = []
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i])):
        px, py = to_pt((xs[i], ys[i]))
        home = next((c for c in clusters if abs(c[0][0] - px) < 6 and abs(c[0][1] - py) < 6),
                    None)
        if home:
            home[1].append(i)
            home[2][0] = max(home[2][0], px)
        else:
            clusters.append(((px, py), [i], [px]))
    points = [tuple(to_pt((x, y))) for x, y in zip(xs, ys)]
    boxes: list[tuple[float, float, float, float]] = []  # labels placed: x0, x1, y0, y1

    def free(x0, x1, y0, y1) -> bool:
        """No label placed and no marker (4 points around its centre) inside the box."""
        return (all(x1 < a or x0 > b or y1 < c or y0 > d for a, b, c, d in boxes)
                and all(not (x0 - 4 < mx < x1 + 4 and y0 - 4 < my < y1 + 4)
                        for mx, my in points))

    for (px, py), members, (right,) in clusters:
        dx = right - px + 7  # right of the cluster's last marker
        rows = [",".join(map(str, members[j:j + 4])) for j in range(0, len(members), 4)]
        width, height = 4.3 * max(map(len, rows)), step * len(rows)  # fontsize 7
        for k in range(40):
            dy = step * ((k + 1) // 2) * (-1 if k % 2 else 1) if k else 0.0
            box = (px + dx, px + dx + width, py + dy - height / 2, py + dy + height / 2)
            if free(*box):
                break
        boxes.append(box)
        i = members[0]
        ax.annotate("\n".join(rows), (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                    fontsize=7, va="center", arrowprops=dict(arrowstyle="-", lw=0.4,
                                                             color="grey") if dy else None)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap
    return textwrap.wrap(text, width, break_on_hyphens=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=30, help="espeak-en test utterances")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--calib-frames", type=int, default=48000,
                        help="calibration encoder frames (1500 per espeak-en train utterance)")
    parser.add_argument("--reuse", nargs="*", type=Path, default=None, metavar="JSON",
                        help="keep the compressed rows (same label) already in --out/speech.json "
                             "and in these files, instead of decoding them again")
    parser.add_argument("--only-checkpoints", action="store_true",
                        help="decode only the original and the --checkpoint models")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=DIR",
                        help="also decode a saved layershare checkpoint (e.g. a distilled one)")
    parser.add_argument("--stacks", choices=("encoder", "all"), default="encoder",
                        help="compress the encoder only, or both stacks (the decoder calibrated "
                             "on the teacher-forced transcripts)")
    parser.add_argument("--replot", action="store_true",
                        help="only redraw speech.png and the table from --out/speech.json")
    args = parser.parse_args(argv)
    if args.replot:
        rows = json.loads((args.out / "speech.json").read_text())
        plot(rows, args.out / "speech.png")
        print(table(rows))
        return 0
    espeak = spread(test_utterances("espeak-en", args.data_dir), args.limit)
    librivox = test_utterances("librivox", args.data_dir)
    base, tokenizer = load_speech_model("whisper-tiny-en")
    stored = {}
    if args.reuse is not None:
        for path in [args.out / "speech.json", *args.reuse]:
            if path.is_file():
                stored.update({r["label"]: r for r in json.loads(path.read_text())})
    batches = None
    configs = CONFIGS if args.stacks == "encoder" else CONFIGS_ALL
    jobs = [(label, method, k, target, fit, None) for label, method, k, target, fit in configs
            if method is None or not args.only_checkpoints]
    for item in args.checkpoint:
        label, _, path = item.rpartition("=")  # labels hold "K=2"; paths rarely "="
        jobs.append((label, "checkpoint", None, None, "distilled", Path(path)))
    rows, start = [], time.perf_counter()
    for label, method, k, target, fit, path in jobs:
        extra = {}
        if method == "checkpoint" and label in stored:
            rows.append(stored[label])
            print(f"{label}: reused", file=sys.stderr, flush=True)
            continue
        if method == "checkpoint":
            model = load_speech_model(path)[0]
            cfg = model.layershare_config
            row = {"label": label, "method": cfg.method, "group_size": cfg.group_size,
                   "rank": None, "fit": fit, "checkpoint": str(path), "stacks": cfg.stacks,
                   "layer_compression": layershare.count(model).compression,
                   **encoder_params(model)}
        else:
            if method is None:
                model, rank, ratio = base, None, 1.0
            else:
                rank, ratio = rank_for(base, method, k, target, args.stacks)
            name = row_label(label, fit, rank, ratio, args.stacks)
            if name in stored and method is not None:
                rows.append({"fit": fit, **stored[name]})
                print(f"{name}: reused from speech.json", file=sys.stderr, flush=True)
                continue
            if fit == "calibrated":
                if batches is None:
                    utts = train_utterances("espeak-en", args.data_dir)
                    batches = speech_batches(base, utts, args.calib_frames, args.batch_size,
                                             tokenizer if args.stacks == "all" else None)
                model, seconds, error_table = calibrated(base, method, k, rank, batches,
                                                         args.stacks)
                extra = {"calib_utterances": sum(len(b["input_features"]) for b in batches),
                         "calib_frames": sum(len(b["input_features"]) for b in batches) * 1500,
                         "compress_s": round(seconds, 1),
                         "whitened_errors": error_table}  # (matrix, mean, max) relative
            elif method is not None:
                model = converted(base, method, k, rank, args.stacks)
            row = {"label": name, "method": method or "original", "group_size": k,
                   "rank": rank, "fit": fit, "layer_compression": ratio,
                   "stacks": args.stacks if method else None,
                   **encoder_params(model), **extra}
        for name, utts in (("espeak", espeak), ("librivox", librivox)):
            res = evaluate_wer(model, tokenizer, utts, batch_size=args.batch_size)
            row.update({f"{name}_wer": res["wer"], f"{name}_errors":
                        res["substitutions"] + res["deletions"] + res["insertions"],
                        f"{name}_words": res["words"], f"{name}_utterances": res["utterances"],
                        f"{name}_decode_s": res["decode_seconds"],
                        f"{name}_hypotheses": res["hypotheses"]})
        print(f"{row['label']}: espeak WER {row['espeak_wer']:.2f} %, LibriVox "
              f"{row['librivox_wer']:.2f} % ({row['librivox_errors']} errors), "
              f"{time.perf_counter() - start:.0f} s so far", file=sys.stderr, flush=True)
        rows.append(row)
        partial = args.out / "speech.partial.json"  # a long run keeps what it has measured
        args.out.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(rows, indent=1) + "\n")
    if args.reuse is not None:  # keep the stored rows this run did not measure, in order
        rows = merged(json.loads(path.read_text()) if (path := args.out / "speech.json").is_file()
                      else [], rows)
    (args.out / "speech.json").write_text(json.dumps(rows, indent=1) + "\n")
    partial.unlink()
    plot(rows, args.out / "speech.png")
    (args.out / "speech-table.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0


def merged(stored: list[dict], new: list[dict]) -> list[dict]:
    """``stored`` with each row of ``new`` in place of the stored row of its label, then the
    rows of ``new`` that were not stored."""
    fresh = {r["label"]: r for r in new}
    out = [fresh.pop(r["label"], r) for r in stored]
    return out + [r for r in new if r["label"] in fresh]


def table(rows: list[dict]) -> str:
    n_e, n_l = rows[0]["espeak_utterances"], rows[0]["librivox_utterances"]
    lines = [f"| model | encoder params | encoder-layer params | layer compression | "
             f"espeak-en WER % ({n_e} utt, {rows[0]['espeak_words']} words) | "
             f"LibriVox WER % ({n_l} clips, {rows[0]['librivox_words']} words) | "
             f"LibriVox word errors | decode s (espeak + LibriVox) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines[0] = lines[0].replace("| model |", "| model | fit | stacks |")
    lines[0] = lines[0].replace("| layer compression |", "| layer compression (of the stacks) |")
    lines[1] = "|---|---" + lines[1]
    for r in rows:
        fit = r.get("fit") or ("-" if r["method"] == "original" else "data-free")
        stacks = r.get("stacks") or ("-" if r["method"] == "original" else "encoder")
        lines.append(f"| {r['label']} | {fit} | {stacks} | {r['encoder_params']:,} | "
                     f"{r['encoder_layer_params']:,} | "
                     f"{r['layer_compression']:.2f}x | {r['espeak_wer']:.2f} | "
                     f"{r['librivox_wer']:.2f} | {r['librivox_errors']} | "
                     f"{r['espeak_decode_s'] + r['librivox_decode_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
