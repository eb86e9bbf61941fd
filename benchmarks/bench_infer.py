"""Inference memory and speed of compact checkpoints against dense, each variant in a fresh
process: batch 1, a 512-token prompt, 128 new tokens (exactly: end-of-sequence suppressed),
greedy, KV cache on, 2 threads, fp32.

Models (``--models``):

* ``gpt2``: the transformers GPT-2 shape of issue 12 with random weights (seed 0): 12 layers,
  d=768, 12 heads, vocab 1000. Variants: ``dense``; ``residual`` (``convert`` K=6, r=32,
  diagonal on, from the dense weights); ``residual-cache`` (the same checkpoint loaded with
  ``cache_merged=True``, the old per-layer cache); ``lowrank`` (K=1, r=128: about the
  residual's size); ``tied`` (K=6).
* ``smollm2``: SmolLM2-135M-Instruct (``smollm2-135m``, GGUF dequantised to fp32). Variants:
  ``dense``; the best residual and the best lowrank setting of ``layershare compress`` at keep
  0.5 (benchmarks/results/pretrained.md), read from ``--artifacts``: ``residual`` =
  ``res3-k0.5`` (residual K=3), ``residual-cache`` (the same, ``cache_merged=True``),
  ``lowrank`` = ``svd1-k0.5`` (per-layer whitened SVD, K=1). Made by
  ``layershare compress smollm2-135m --method residual --group-size 3 --keep 0.5 --calib brown
  --calib-tokens 8192 --out ARTIFACTS/res3-k0.5`` and ``--method lowrank --group-size 1``
  (``svd1-k0.5``).

Every checkpoint is written once with ``layershare.save`` under ``--work`` (dense ones too)
and loaded with ``layershare.load``. A child process (this script, ``--child``) imports
torch, transformers and layershare, runs one tiny forward of an unrelated model to
initialise the BLAS/oneDNN runtime, imports the model's class (transformers imports its
modelling module lazily, ~95 MiB for GPT-2: an import, not the model), notes its RSS (the
baseline), resets the peak-RSS counter
(``/proc/self/clear_refs``), loads the checkpoint, warms up with one generate() of 8 prompt
tokens and 2 new ones, then runs the timed generate() (``layershare.infer.timed_generate``).
Reported per variant, medians over ``--rounds`` interleaved rounds (all variants of a model
in turn, order rotated per round): bytes of unique weights, peak RSS above the baseline,
prefill ms and decode tokens/s, each with its ratio to dense measured in the same round.
Children run with glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` (``--malloc-mmap-threshold``):
with glibc's default dynamic threshold, activations freed after the prefill stay in the heap,
which raised the peak of every variant by ~90 MiB in a probe (tied GPT-2: +341 against +251
MiB); the fixed threshold makes RSS follow live memory. The memory bound of issue 12 for a
variant is ``1.15 x (unique weight bytes + KV cache + one layer's dense weights)``.

    PYTHONPATH=src python benchmarks/bench_infer.py --models gpt2 --rounds 3
    PYTHONPATH=src python benchmarks/bench_infer.py --models smollm2 --rounds 3
Results: benchmarks/results/inference.md (one section per model, rewritten per model) and
inference-<model>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROMPT, NEW, THREADS = 512, 128, 2
RESULTS = Path(__file__).resolve().parent / "results"

MODELS = {
    "gpt2": {"dense": None,
             "residual": dict(method="residual", group_size=6, rank=32),
             "residual-cache": "residual",
             "lowrank": dict(method="lowrank", group_size=1, rank=128),
             "tied": dict(method="tied", group_size=6)},
    "smollm2": {"dense": None,
                "residual": "@res3-k0.5",  # @NAME: a `compress` output under --artifacts
                "residual-cache": "residual",
                "lowrank": "@svd1-k0.5"},
}


def base_model(name: str):
    import torch
    import transformers
    if name == "gpt2":
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(vocab_size=1000, n_positions=1024, n_embd=768, n_layer=12,
                                      n_head=12)
        return transformers.GPT2LMHeadModel(cfg).eval()
    from layershare.formats.hub import from_local
    return from_local("smollm2-135m")


def setup(name: str, work: Path, artifacts: Path) -> dict[str, Path]:
    """Write each variant's checkpoint once (skipped when present); variant -> directory."""
    import layershare
    dirs = {}
    for variant, spec in MODELS[name].items():
        if isinstance(spec, str) and spec.startswith("@"):  # made by `layershare compress`
            dirs[variant] = artifacts / spec[1:]
            if not (dirs[variant] / "layershare.json").is_file():
                raise SystemExit(f"{variant}: no compact checkpoint at {dirs[variant]} "
                                 "(see this script's docstring for the compress command)")
            continue
        if isinstance(spec, str):  # the same checkpoint loaded another way
            dirs[variant] = dirs[spec]
            continue
        path = work / f"{name}-{variant}"
        dirs[variant] = path
        if (path / "layershare.json").is_file():
            continue
        print(f"writing {path}", flush=True)
        model = base_model(name)
        if spec is not None:
            layershare.convert(model, **spec)
        layershare.save(model, path)
    return dirs


def child(directory: str, cache: bool) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    import torch
    torch.set_num_threads(THREADS)
    import transformers  # noqa: F401  (imports count in the baseline, as for any user)

    import layershare
    from layershare.checkpoint import read_meta, unique_state
    from layershare.infer import peak_rss_bytes, reset_peak_rss, rss_bytes, timed_generate
    getattr(transformers, read_meta(directory)["base"]["class"])  # its lazy module: ~95 MiB
    import transformers.generation.utils  # noqa: F401
    with torch.no_grad():  # initialise the matmul runtime outside the measurement
        torch.nn.Linear(64, 64)(torch.randn(4, 64))
    baseline = rss_bytes()
    reset = reset_peak_rss()
    start = time.perf_counter()
    model = layershare.load(directory, cache_merged=cache)
    load_s = time.perf_counter() - start
    cfg = model.config
    ids = torch.randint(0, cfg.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    pad = dict(pad_token_id=0)
    timed_generate(model, ids[:, :8], 2, exact=True, do_sample=False, **pad)  # warm-up
    out, timing = timed_generate(model, ids, NEW, exact=True, do_sample=False, **pad)
    peak = peak_rss_bytes()
    assert out.shape[1] == PROMPT + NEW
    unique = sum(t.numel() * t.element_size() for t in unique_state(model).values())
    layers = cfg.num_hidden_layers
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    kv = 2 * layers * (PROMPT + NEW) * heads * head_dim * 4
    print(json.dumps({"unique_bytes": unique, "baseline_rss": baseline, "peak_rss": peak,
                      "peak_above_baseline": peak - baseline, "peak_reset": reset,
                      "kv_bytes": kv, "load_s": load_s, "prefill_ms": timing.prefill_s * 1e3,
                      "decode_tps": timing.decode_tokens_per_s,
                      "tokens": out[0, PROMPT:PROMPT + 8].tolist()}))


def layer_dense_bytes(directory: Path) -> int:
    """Bytes of one layer's converted matrices as dense fp32 weights (from the header only)."""
    import layershare
    c = layershare.count(layershare.load_structure(directory))
    return c.dense_layer_params * 4 // max(1, c.layers) if hasattr(c, "layers") else 0


def run(name: str, rounds: int, work: Path, malloc_threshold: int, artifacts: Path,
        wrap: list[str]) -> dict:
    dirs = setup(name, work, artifacts)
    variants = list(MODELS[name])
    rows = {v: [] for v in variants}
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TOKENIZERS_PARALLELISM": "false"}
    if malloc_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(malloc_threshold)
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            cmd = [*wrap, sys.executable, __file__, "--child", str(dirs[v])]
            if v.endswith("-cache"):
                cmd.append("--cache")
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{v}: child failed\n{done.stderr[-2000:]}")
            rows[v].append(json.loads(done.stdout.strip().splitlines()[-1]))
            m = rows[v][-1]
            print(f"round {r + 1} {name} {v}: peak+{m['peak_above_baseline'] / 2**20:.0f} MiB, "
                  f"prefill {m['prefill_ms']:.0f} ms, decode {m['decode_tps']:.1f} tok/s",
                  flush=True)
    return {"rows": rows, "layer_dense_bytes": layer_dense_bytes(dirs["dense"]),
            "rounds": rounds, "malloc_mmap_threshold": malloc_threshold,
            "dirs": {v: str(p) for v, p in dirs.items()}}


def table(name: str, result: dict) -> list[str]:
    rows, one_layer = result["rows"], result["layer_dense_bytes"]
    med = statistics.median
    mib = 2 ** 20

    def paired(v, key):  # median over rounds of the ratio to dense in the same round
        return med(a[key] / d[key] for a, d in zip(rows[v], rows["dense"]))

    lines = ["| variant | unique weights MiB | peak RSS above baseline MiB (x dense) | "
             "bound 1.15 x (weights + KV + 1 layer) MiB | prefill ms (x dense) | "
             "decode tokens/s (x dense) |", "|---|---|---|---|---|---|"]
    for v, ms in rows.items():
        unique, kv = ms[0]["unique_bytes"], ms[0]["kv_bytes"]
        bound = 1.15 * (unique + kv + one_layer)
        peak = med(m["peak_above_baseline"] for m in ms)
        lines.append(
            f"| {v} | {unique / mib:.1f} | "
            f"{peak / mib:.1f} ({paired(v, 'peak_above_baseline'):.2f}x)"
            f" | {bound / mib:.1f} ({'within' if peak <= bound else 'over'}) | "
            f"{med(m['prefill_ms'] for m in ms):.0f} ({paired(v, 'prefill_ms'):.2f}x) | "
            f"{med(m['decode_tps'] for m in ms):.1f} ({paired(v, 'decode_tps'):.2f}x) |")
    kv = rows["dense"][0]["kv_bytes"]
    lines += ["", f"KV cache {kv / mib:.1f} MiB; one layer's dense weights {one_layer / mib:.1f} "
              f"MiB; baseline RSS (after imports) median "
              f"{med(m['baseline_rss'] for m in rows['dense']) / mib:.0f} MiB; load time median "
              + ", ".join(f"{v} {med(m['load_s'] for m in ms):.1f} s" for v, ms in rows.items())
              + "."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="gpt2", help="gpt2, smollm2 or gpt2,smollm2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("runs/bench_infer"))
    ap.add_argument("--malloc-mmap-threshold", type=int, default=131072,
                    help="glibc MALLOC_MMAP_THRESHOLD_ for the children (0: glibc's default)")
    ap.add_argument("--artifacts", type=Path, default=Path("/work/artifacts/smollm2"),
                    help="where the smollm2 `compress` outputs (res3-k0.5, svd1-k0.5) are")
    ap.add_argument("--wrap", default="", help="command prefix for the timed children, e.g. a "
                    "script that pauses other work on a shared machine")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--cache", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.cache)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        start = time.perf_counter()
        load = os.getloadavg()[0]
        result = run(name, args.rounds, args.work, args.malloc_mmap_threshold, args.artifacts,
                     shlex.split(args.wrap))
        result["wall_s"] = time.perf_counter() - start
        result["load_1min_start_end"] = [load, os.getloadavg()[0]]
        (RESULTS / f"inference-{name}.json").write_text(json.dumps(result, indent=1) + "\n")
        print("\n".join(table(name, result)))
        print(f"{name}: {result['wall_s']:.0f} s, load average {load:.2f} -> "
              f"{result['load_1min_start_end'][1]:.2f}")


if __name__ == "__main__":
    main()
