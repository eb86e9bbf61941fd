"""Speech verbs: ``layershare eval-speech MODEL --data espeak-en|librivox|all``.

    layershare eval-speech whisper-tiny-en --data all [--beam 4] [--limit 100] [--json]
    layershare eval-speech runs/whisper-res --data espeak-en --out runs/whisper-res/wer.json

MODEL: a short name (``whisper-tiny-en``), a CTranslate2 or transformers Whisper directory, or
a layershare checkpoint of one. Prints WER (after Whisper's English normalisation), S/D/I,
utterances, words and decoding time per test set; ``--out`` also writes every hypothesis.
"""

from __future__ import annotations

import json
from pathlib import Path

SETS = ("espeak-en", "librivox")


def add_commands(sub) -> None:
    p = sub.add_parser("eval-speech", help="word error rate of a Whisper model on speech test sets")
    p.add_argument("model", help="whisper-tiny-en, a Whisper directory or a layershare checkpoint")
    p.add_argument("--data", choices=SETS + ("all",), default="all")
    p.add_argument("--beam", type=int, default=1, help="beam width (1 = greedy)")
    p.add_argument("--limit", type=int, default=None, help="first N utterances of each set")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=128,
                   help="stop a hypothesis after N tokens (bounds a looping model's cost)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="data directory (default $LAYERSHARE_DATA or ./data)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=Path, default=None, help="write results + hypotheses as JSON")
    p.set_defaults(func=cmd_eval_speech)


def cmd_eval_speech(args) -> None:
    from .. import limits
    from ..evaluate.wer import encoder_params, evaluate_wer, load_speech_model, test_utterances

    for name in ("beam", "batch_size", "max_new_tokens"):
        limits.at_least("--" + name.replace("_", "-"), getattr(args, name))
    if args.limit is not None:
        limits.at_least("--limit", args.limit)
    sets = SETS if args.data == "all" else (args.data,)
    data = {name: test_utterances(name, args.data_dir) for name in sets}  # fail before loading
    model, tokenizer = load_speech_model(args.model)
    results = {"model": str(args.model), **encoder_params(model), "sets": {}}
    for name, utterances in data.items():
        results["sets"][name] = evaluate_wer(model, tokenizer, utterances, beams=args.beam,
                                             batch_size=args.batch_size, limit=args.limit,
                                             progress=True, max_new_tokens=args.max_new_tokens)
    if args.out is not None:
        _write_json(args.out, results)
    if args.json:
        print(json.dumps({**results, "sets": {k: {m: v for m, v in r.items() if m != "hypotheses"}
                                              for k, r in results["sets"].items()}}))
        return
    print(f"{args.model}: encoder {results['encoder_params']:,} parameters "
          f"({results['encoder_layer_params']:,} in its layers)")
    print("| test set | utterances | words | WER % | sub | del | ins | decode s | x real time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results["sets"].items():
        print(f"| {name} | {r['utterances']} | {r['words']} | {r['wer']:.2f} | "
              f"{r['substitutions']} | {r['deletions']} | {r['insertions']} | "
              f"{r['decode_seconds']:.1f} | {1 / r['real_time_factor']:.1f} |")


def _write_json(path: Path, results: dict) -> None:
    """Write to a temporary file beside ``path``, then rename: never a half-written file."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
