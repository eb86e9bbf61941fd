"""Speech verbs:
``layershare eval-speech MODEL --data espeak-asr|espeak-en|librivox|all|FILE.jsonl``.

    layershare eval-speech whisper-tiny-en --data all [--beam 4] [--limit 100] [--json]
    layershare eval-speech runs/whisper-res --data espeak-en --out runs/whisper-res/wer.json
    layershare eval-speech runs/asr/residual --data espeak-asr      # a recogniser you trained
    layershare eval-speech runs/asr/residual --data my/clips.jsonl  # your own recordings

MODEL: a short name (``whisper-tiny-en``), a CTranslate2 or transformers Whisper directory, or
a layershare checkpoint of one; or a run of the ``asr`` task (``layershare train`` with
``data.name: espeak-asr``) or its ``model/`` checkpoint, decoded by CTC (greedy, or
``--beam N`` prefix beam search without a language model). ``--data all`` means espeak-en +
librivox for Whisper and espeak-asr (test, test-voices) + librivox for a CTC recogniser.
A FILE.jsonl is your own manifest: ``{"audio": "a.wav", "text": "..."}`` per line, WAV
paths relative to its folder (:mod:`layershare.data.manifest`). Prints WER (after Whisper's
English normalisation), S/D/I, utterances, words, decoding time and real-time factor per
test set; ``--out`` also writes every hypothesis.
"""

from __future__ import annotations

import json
from pathlib import Path

SETS = ("espeak-en", "librivox")          # --data all, Whisper
CTC_SETS = ("espeak-asr", "librivox")     # --data all, a recogniser trained by layershare


def add_commands(sub) -> None:
    p = sub.add_parser("eval-speech", help="word error rate of a Whisper model on speech test sets")
    p.add_argument("model", help="whisper-tiny-en, a Whisper directory or a layershare "
                                 "checkpoint, or a run directory of the asr task")
    p.add_argument("--data", default="all",
                   metavar="NAME|FILE.jsonl",
                   help="espeak-asr | espeak-en | librivox | all | FILE.jsonl (your manifest; "
                        "docs/cli.md, naming data)")
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
    from ..evaluate.ctc import is_ctc_model

    if args.beam < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        from ..errors import LayershareError
        raise LayershareError("--beam, --batch-size and --limit must be >= 1")
    results = _ctc(args) if is_ctc_model(args.model) else _whisper(args)
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


def _whisper(args) -> dict:
    from ..evaluate.ctc import speech_sets
    from ..evaluate.wer import encoder_params, evaluate_wer, load_speech_model

    data = {}
    for name in SETS if args.data == "all" else (args.data,):
        data.update(speech_sets(name, args.data_dir))  # every set read before loading
    model, tokenizer = load_speech_model(args.model)
    results = {"model": str(args.model), **encoder_params(model), "sets": {}}
    for name, utterances in data.items():
        results["sets"][name] = evaluate_wer(model, tokenizer, utterances, beams=args.beam,
                                             batch_size=args.batch_size, limit=args.limit,
                                             progress=True, max_new_tokens=args.max_new_tokens)
    return results


def _ctc(args) -> dict:
    from ..evaluate.ctc import evaluate_ctc, load_ctc_model, speech_sets

    data = {}
    for name in CTC_SETS if args.data == "all" else (args.data,):
        data.update(speech_sets(name, args.data_dir))  # every set read before decoding
    model = load_ctc_model(args.model)
    unique = lambda module: sum({id(p): p.numel() for p in module.parameters()}.values())  # noqa: E731
    results = {"model": str(args.model), "encoder_params": unique(model),
               "encoder_layer_params": unique(model.encoder.layers), "sets": {}}
    for name, utterances in data.items():
        results["sets"][name] = evaluate_ctc(model, utterances, args.beam, args.limit)
    return results


def _write_json(path: Path, results: dict) -> None:
    """Written beside ``path``, then renamed: never a half-written file."""
    from ..outputs import replace_file

    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, json.dumps(results, indent=1, ensure_ascii=False) + "\n")
