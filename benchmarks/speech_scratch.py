"""Speech recognisers trained from scratch: ResidualTransformer against its honest baselines.

    OMP_NUM_THREADS=1 python benchmarks/speech_scratch.py run dense12 residual --root runs/asr
    python benchmarks/speech_scratch.py report --root runs/asr --out benchmarks/results

``run`` trains each named variant in turn: first the learning-rate sweep (the values of
``LRS``, grown past an edge where the best sits on one: protocol.py; each run a fifth of the
config's steps with the schedule scaled to match, scored by the valid CTC loss of its last
evaluation: a fifth of the way in, a recogniser's WER can still be ~100% at every rate,
where the loss already ranks them), then the full run at the sweep's best rate, for the
config's steps times ``--steps-scale``. The sweep keeps its length whatever the scale, so a
longer protocol can reuse the sweeps of a shorter one: give it a new ``--root`` (its runs
have other configs) holding a copy of the old ``ROOT/sweep``; a finished sweep run is read,
not rerun. Every run is an ordinary ``layershare train`` into ``ROOT/sweep/NAME-lrX`` or
``ROOT/NAME``, so running the same command again resumes where it stopped. Every variant
sees the same data, the same buckets in the same order, the same steps and schedule; only
the model and the rate differ.

``rtf`` times the recognisers side by side (run it under ``benchmarks/quiet.sh``);
``report`` writes ``NAME-table.md``, ``NAME.json``, ``NAME-pareto.png`` (test WER against
encoder-layer bytes) and ``NAME-curves.png`` (valid WER against frames seen), with the
side-by-side speeds of ``--rtf`` in the table; ``trend`` plots the test WER of several
reports against their protocols' length. Both live in report_speech_scratch.py.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import (  # noqa: E402  (a script beside its shared module)
    CONFIGS,
    grown_sweep,
    last_valid,
    sweep_loss,
    train,
)
from report_speech_scratch import cmd_report, cmd_trend  # noqa: E402  (its report side)

LRS = (1.5e-3, 3e-3, 6e-3)
SWEEP_FRACTION = 5
WIDTH = [1.0]  # --width-scale of this invocation (the GPU size doubles every width)
# name -> (config, --set overrides, label)
VARIANTS = {
    "dense12": ("asr-espeak-dense.yaml", [], "dense 12 layers"),
    "residual": ("asr-espeak-residual.yaml", [], "residual K=4 r=4 + diag"),
    "res-shared": ("asr-espeak-residual.yaml", ["share.rank=0", "share.diag=false"],
                   "residual: shared only"),
    "res-shared-diag": ("asr-espeak-residual.yaml", ["share.rank=0"], "residual: shared + diag"),
    "res-shared-lowrank": ("asr-espeak-residual.yaml", ["share.diag=false"],
                           "residual: shared + low rank"),
    "dense4": ("asr-espeak-dense-4l.yaml", [], "dense 4 layers"),
    "narrow12": ("asr-espeak-dense-narrow.yaml", [], "dense 12 narrow (d=54)"),
    "tied2": ("asr-espeak-tied.yaml", [], "tied K=2 (6 blocks x 2)"),
    "dense6": ("asr-espeak-dense-6l.yaml", [], "dense 6 layers"),
}


def widened(config: str, scale: float) -> list[str]:
    """Overrides that make a variant's width (d_model, ffn, conv channels) ``scale`` times
    its config's: the GPU size keeps every variant's shape relative to the others."""
    import yaml

    if scale == 1:
        return []
    model = yaml.safe_load((CONFIGS / config).read_text())["model"]
    return [f"model.{k}={round(model[k] * scale)}" for k in ("d_model", "ffn", "conv_channels")]


def config_steps(config: str) -> dict:
    import yaml

    train = yaml.safe_load((CONFIGS / config).read_text())["train"]
    return {k: train[k] for k in ("steps", "warmup", "eval_every", "save_every")}


def sweep(name: str, root: Path, extra: list[str]) -> float:
    """The rate of ``LRS`` whose short run ends with the lowest valid loss. A best rate at an
    edge of the grid is no optimum: the grid then grows by a factor of 2 past that edge (at
    most ``EXTEND`` times) until the best lies inside it."""
    config, overrides, _ = VARIANTS[name]
    overrides = overrides + widened(config, WIDTH[0])
    s = {k: max(v // SWEEP_FRACTION, 1) for k, v in config_steps(config).items()}
    short = [f"train.steps={s['steps']}", f"train.warmup={s['warmup']}",
             f"train.eval_every={s['steps'] // 2}", f"train.save_every={s['save_every']}"]
    # another width is another model: its own sweep folders (a finished one is only read)
    tag = name if WIDTH[0] == 1 else f"{name}-w{WIDTH[0]:g}"

    def score(lr: float) -> float:
        run = root / "sweep" / f"{tag}-lr{lr:g}"
        return sweep_loss(run, lambda: train(config, overrides, run,
                                             short + [f"train.lr={lr}"] + extra))

    scores = grown_sweep(LRS, score)
    best = min(scores, key=scores.get)
    (root / "sweep" / f"{name}.json").write_text(json.dumps(
        {"valid_loss_by_lr": {f"{k:g}": v for k, v in scores.items()}, "best": best,
         "valid_wer_by_lr": {f"{k:g}": last_valid(root / "sweep" / f"{tag}-lr{k:g}")
                             for k, v in scores.items() if v < math.inf}}, indent=1) + "\n")
    print(f"{name}: valid loss by lr {scores}; using {best:g}", flush=True)
    return best


def cmd_run(args) -> None:
    for name in args.variants:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    extra = ([f"data.dir={args.data_dir}"] if args.data_dir else []) + list(args.set)
    WIDTH[0] = args.width_scale
    for name in args.variants:
        config, overrides, _ = VARIANTS[name]
        lr = args.lr if args.lr else sweep(name, root, extra)
        longer = [f"train.{k}={max(1, round(v * args.steps_scale))}"
                  for k, v in config_steps(config).items()] if args.steps_scale != 1 else []
        train(config, overrides + widened(config, args.width_scale), root / name,
              [f"train.lr={lr}"] + longer + extra)


# -- measuring (report_speech_scratch.py reports) ------------------------------------------
def cmd_measure(args) -> None:
    """One model, one precision, in its own process (so its peak RSS is its own): load it,
    decode the test sets with one thread, print one JSON line."""
    import resource
    import time

    import torch

    from layershare.deploy.int8 import fp32_bytes, int8_bytes, quantize_int8_
    from layershare.evaluate.ctc import evaluate_ctc, load_ctc_model, speech_sets

    torch.set_num_threads(1)
    sets = {}
    for name in ("espeak-asr", "librivox"):
        sets.update(speech_sets(name, Path(args.data_dir) if args.data_dir else None, False))
    start = time.perf_counter()
    model = load_ctc_model(args.run)
    load_s = time.perf_counter() - start
    layers = model.encoder.layers
    out = {"run": args.run, "precision": args.precision, "load_s": round(load_s, 3),
           "layer_bytes_fp32": fp32_bytes(layers), "layer_bytes_int8": int8_bytes(layers),
           "model_bytes_fp32": fp32_bytes(model), "model_bytes_int8": int8_bytes(model)}
    if args.precision == "int8":
        quantize_int8_(model)
    for name, utterances in sets.items():
        r = evaluate_ctc(model, utterances)
        out[name] = {k: r[k] for k in ("wer", "words", "utterances", "audio_seconds",
                                         "decode_seconds", "real_time_factor")}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out), flush=True)


def cmd_rtf(args) -> None:
    """Real-time factor side by side: every run's recogniser decodes the espeak-asr test set
    (features + encoder + greedy CTC, one thread), the runs alternating round by round so the
    drift of a shared machine hits them alike; the median round of each, and its ratio to
    the first run. Run it under benchmarks/quiet.sh."""
    import statistics

    import torch

    from layershare.evaluate.ctc import load_ctc_model, speech_sets, transcribe

    torch.set_num_threads(1)
    utterances = speech_sets("espeak-asr", Path(args.data_dir) if args.data_dir else None,
                             False)["espeak-asr/test"]
    audio = sum(u.seconds for u in utterances)
    models = [load_ctc_model(run) for run in args.runs]
    for model in models:  # warm-up
        transcribe(model, utterances[:16])
    seconds = [[] for _ in models]
    for _ in range(args.rounds):
        for i, model in enumerate(models):
            seconds[i].append(transcribe(model, utterances)[1])
    medians = [statistics.median(s) for s in seconds]
    out = {"audio_seconds": audio, "utterances": len(utterances), "rounds": args.rounds,
           "threads": 1, "runs": {run: {"seconds": m, "real_time_factor": m / audio,
                                        "vs_first": m / medians[0], "all_rounds": s}
                                  for run, m, s in zip(args.runs, medians, seconds)}}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="sweep the rate, then train, each variant in turn")
    r.add_argument("variants", nargs="+", help=", ".join(VARIANTS))
    r.add_argument("--root", default="runs/asr")
    r.add_argument("--data-dir", default=None, help="where espeak-asr is prepared")
    r.add_argument("--lr", type=float, default=None, help="skip the sweep, use this rate")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more override for every run (e.g. train.device=cuda)")
    r.add_argument("--width-scale", type=float, default=1.0,
                   help="every variant's d_model, ffn and conv channels times this")
    r.add_argument("--steps-scale", type=float, default=1.0,
                   help="the full runs' steps, warmup, eval and save intervals times this")
    r.set_defaults(func=cmd_run)
    m = sub.add_parser("measure", help="(internal) WER, RTF and peak memory of one model")
    m.add_argument("run")
    m.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    m.add_argument("--data-dir", default=None)
    m.set_defaults(func=cmd_measure)
    t = sub.add_parser("rtf", help="real-time factors of runs side by side (quiet.sh)")
    t.add_argument("runs", nargs="+", help="run directories; the first is the reference")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--data-dir", default=None)
    t.add_argument("--out", default=None, help="also write the JSON here")
    t.set_defaults(func=cmd_rtf)
    q = sub.add_parser("report", help="measure every finished run; table and plots")
    q.add_argument("--root", default="runs/asr")
    q.add_argument("--out", default="benchmarks/results")
    q.add_argument("--data-dir", default=None)
    q.add_argument("--wrap", default=None, help="run each measurement under this (quiet.sh)")
    q.add_argument("--rtf", default=None,
                   help="the JSON of `rtf` (side by side): its speeds go in the table")
    q.add_argument("--name", default="speech-scratch",
                   help="file names: NAME.json, NAME-table.md, NAME-pareto.png, NAME-curves.png")
    q.set_defaults(func=lambda a: cmd_report(
        a, {name: label for name, (_, _, label) in VARIANTS.items()},
        [sys.executable, __file__, "measure"]))
    g = sub.add_parser("trend", help="test WER against the length of each protocol (a PNG)")
    g.add_argument("reports", nargs="+", help="the NAME.json files of report")
    g.add_argument("--out", required=True, help="the PNG to write")
    g.set_defaults(func=cmd_trend)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
