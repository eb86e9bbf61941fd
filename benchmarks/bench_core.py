"""Speed and memory of dense vs. shared GPT-2 models, side by side in one run.

Variants (same GPT2LMHeadModel, sdpa attention, dropout 0, same seed before conversion):
``dense``; ``residual`` (ResidualTransformer: K=3, r=64, diagonal on every matrix,
init="scratch"; each layer merges its own weight, as before layershare.bank); ``batched`` (the
same model with batched merges, layershare.bank: one merge per matrix type of the stack);
``lowrank`` (LightFormer-style: K=1, r=192); ``tied`` (ALBERT-style, K=2).
Ranks are for the full size; the small preset keeps r/d (64/768, 192/768).

Training step = forward + causal-LM loss + backward + AdamW step (fused on CUDA); bf16
autocast on CUDA, fp32 on CPU. All variants live in one process. After a warm-up, the run
does ``--rounds`` rounds; in each, every variant times a block of ``--steps`` steps in turn
(order rotated per round, ``torch.cuda.synchronize`` around each block), so drifts of a
noisy machine hit all variants alike. Reported: median tokens/s over rounds, and the median
over rounds of the ratio to dense within the same round (paired, so load changes between
rounds cancel). Inference = one forward (eval, no_grad, use_cache=False) over the inference
batch, interleaved the same way: median latency and paired latency ratio. CPU runs use one
thread unless ``--threads`` says otherwise: on a shared 2-core machine, 2 threads measured
2-3x slower per step than 1 and far noisier (OpenMP threads wait on preempted siblings).

Peak memory. CUDA: per variant, the allocator's peak over one training step above what was
allocated before it, plus the variant's own parameters and AdamW state (so the other
variants' tensors do not count). CPU: each variant runs in a fresh child process (this
script, hidden flag) that builds it, resets its peak-RSS counter (/proc/self/clear_refs) and
trains 3 steps; reported: the peak RSS (VmHWM) of those steps, interpreter and libraries
included, and its rise over the RSS before training. ru_maxrss is not used: Linux carries
the parent's peak into a child across exec. Parameter counts: ``layershare.count``.

    PYTHONPATH=src python benchmarks/bench_core.py --size small          # CPU, a few min
    PYTHONPATH=src python benchmarks/bench_core.py --size full --compile # GPU
Results: benchmarks/results/core-<device>-<size>[-compile].md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # measure this checkout's layershare

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

import layershare  # noqa: E402
from layershare.bank import set_batched  # noqa: E402

PRESETS = {
    "full": dict(layers=12, d=768, heads=12, ffn=3072, vocab=32768, batch=16, seq=1024,
                 infer_batch=64, infer_seq=512, residual_rank=64, lowrank_rank=192,
                 warmup=5, steps=10, rounds=5, infer_reps=5),
    # for checking the scripts on a CPU in seconds (figures meaningless)
    "tiny": dict(layers=3, d=64, heads=2, ffn=256, vocab=512, batch=2, seq=32, infer_batch=2,
                 infer_seq=32, residual_rank=8, lowrank_rank=16, warmup=1, steps=1, rounds=2,
                 infer_reps=1),
    "small": dict(layers=6, d=256, heads=4, ffn=1024, vocab=8192, batch=8, seq=128,
                  infer_batch=8, infer_seq=128, residual_rank=21, lowrank_rank=64,
                  warmup=2, steps=2, rounds=7, infer_reps=3),
}
VARIANTS = ("dense", "residual", "batched", "lowrank", "tied")


def build(variant: str, p: dict, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    config = GPT2Config(n_layer=p["layers"], n_embd=p["d"], n_head=p["heads"], n_inner=p["ffn"],
                        vocab_size=p["vocab"], n_positions=max(p["seq"], p["infer_seq"]),
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0,
                        eos_token_id=0, use_cache=False, attn_implementation="sdpa")
    model = GPT2LMHeadModel(config)
    if variant in ("residual", "batched"):
        layershare.convert(model, "residual", group_size=3, rank=p["residual_rank"],
                           strategy="sequence", init="scratch", diag=True)
        set_batched(model, variant == "batched")  # convert turns batching on
    elif variant == "lowrank":
        layershare.convert(model, "lowrank", group_size=1, rank=p["lowrank_rank"])
    elif variant == "tied":
        layershare.convert(model, "tied", group_size=2)
    return model.to(device)


class Runner:
    """One variant: its model (maybe compiled), optimizer and fixed random batches."""

    def __init__(self, variant, p, device, compile_, mode=None):
        self.name, self.device = variant, device
        self.model = build(variant, p, device)
        self.counts = layershare.count(self.model)
        self.fn = torch.compile(self.model, mode=mode) if compile_ else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4,
                                     fused=device.type == "cuda")
        g = torch.Generator().manual_seed(1)
        self.x = torch.randint(p["vocab"], (p["batch"], p["seq"]), generator=g).to(device)
        self.xi = torch.randint(p["vocab"], (p["infer_batch"], p["infer_seq"]),
                                generator=g).to(device)

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self):
        self.model.train()
        with self.autocast():
            loss = self.fn(input_ids=self.x, labels=self.x).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def infer(self):
        self.model.eval()
        with torch.no_grad(), self.autocast():
            self.fn(input_ids=self.xi)

    def resident_bytes(self) -> int:
        """Parameters + AdamW state of this variant (each tensor once)."""
        tensors = {id(t): t for t in self.model.parameters()}
        for state in self.opt.state.values():
            tensors.update({id(v): v for v in state.values() if torch.is_tensor(v)})
        return sum(t.numel() * t.element_size() for t in tensors.values())


def timed(runner: Runner, fn, n: int) -> float:
    """Seconds per call of ``fn`` over ``n`` calls, device synchronised at both ends."""
    sync = torch.cuda.synchronize if runner.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n


def interleaved(runners, fn_name, n, rounds, label):
    """{variant: [seconds per call, one per round]}, variants rotated each round."""
    out = {r.name: [] for r in runners}
    for k in range(rounds):
        for r in runners[k % len(runners):] + runners[:k % len(runners)]:
            out[r.name].append(timed(r, getattr(r, fn_name), n))
        print(f"  {label} round {k + 1}/{rounds}: " + ", ".join(
            f"{name} {ts[-1] * 1e3:.0f} ms" for name, ts in out.items()), flush=True)
    return out


def paired_ratio(times, name, inverse=False) -> float:
    """Median over rounds of (variant / dense) within a round; inverse for throughput."""
    return statistics.median((d / v if inverse else v / d)
                             for v, d in zip(times[name], times["dense"]))


def status_mib(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def mem_child(variant, p, device, compile_, mode=None):
    """Hidden entry point: build one variant, train a few steps, print memory as JSON."""
    r = Runner(variant, p, device, compile_, mode)
    gc.collect()
    out = {"build_peak_rss_mib": status_mib("VmHWM"), "rss_before_train_mib": status_mib("VmRSS")}
    try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        out["peak_reset"] = True
    except OSError:
        out["peak_reset"] = False  # then the peak below includes the build
    for _ in range(3 + (p["warmup"] if compile_ else 0)):  # step 2 on holds AdamW state
        r.train_step()
    out["peak_mib"] = status_mib("VmHWM")
    out["train_delta_mib"] = out["peak_mib"] - out["rss_before_train_mib"]
    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def cuda_memory(r: Runner) -> dict:
    r.train_step()  # drops the eval-mode merged-weight caches left by inference
    gc.collect()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    r.train_step()
    torch.cuda.synchronize()
    step = torch.cuda.max_memory_allocated() - base
    return {"peak_mib": (step + r.resident_bytes()) / 2**20, "step_mib": step / 2**20}


def cpu_memory(variant, args, size) -> dict:
    cmd = [sys.executable, __file__, "--size", size, "--device", args.device, "--threads",
           str(args.threads), "--mem-child", variant] + (["--compile"] if args.compile else []) + (
        ["--mode", args.mode] if args.mode else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                n = torch.get_num_threads()
                return f"{line.split(':', 1)[1].strip()}, {n} thread{'s' * (n > 1)}"
    return "cpu"


def render(meta, rows) -> str:
    p, cpu = meta["preset"], meta["device_type"] == "cpu"
    mem_label = "peak RSS MiB (+train)" if cpu else "peak MiB"
    lines = [
        f"# Core benchmark: {meta['device_type']}, size {meta['size']}", "",
        f"- command: `{meta['command']}`", f"- date: {meta['date']}",
        f"- device: {meta['device']}; load average (1 min) at start / end: "
        f"{meta['load'][0]:.2f} / {meta['load'][1]:.2f}",
        f"- torch {meta['torch']}, transformers {meta['transformers']}, "
        f"compile: {meta['compile']}, dtype: {meta['dtype']}",
        f"- model: GPT2LMHeadModel, {p['layers']} layers, d={p['d']}, {p['heads']} heads, "
        f"FFN {p['ffn']}, vocab {p['vocab']}, sdpa, dropout 0",
        f"- variants: residual K=3 r={p['residual_rank']} diag init=scratch; lowrank K=1 "
        f"r={p['lowrank_rank']}; tied K=2",
        f"- train batch {p['batch']} x {p['seq']}, {p['warmup']} warm-up steps, then "
        f"{meta['rounds']} interleaved rounds x {meta['steps']} steps; inference batch "
        f"{p['infer_batch']} x {p['infer_seq']}, {meta['rounds']} rounds x "
        f"{p['infer_reps']} forwards", "",
        f"| variant | unique params | layer params | layer compr. | train tok/s | x dense "
        f"| {mem_label} | infer ms | x dense |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = f"{r['memory']['peak_mib']:,.0f}"
        if cpu:
            mem += f" (+{r['memory']['train_delta_mib']:,.0f})"
        lines.append(f"| {r['variant']} | {r['unique_params'] / 1e6:.2f}M | "
                     f"{r['layer_params'] / 1e6:.2f}M | {r['compression']:.2f}x | "
                     f"{r['train_tok_s']:,.0f} | {r['train_ratio']:.3f} | {mem} | "
                     f"{r['infer_ms']:.1f} | {r['infer_ratio']:.3f} |")
    lines += ["", "- x dense: medians of per-round ratios to dense; train = tokens/s ratio "
              "(higher is faster), infer = latency ratio (lower is faster)."]
    if cpu:
        reset = all(r["memory"]["peak_reset"] for r in rows)
        lines.append("- memory: peak RSS (VmHWM) of a fresh process (torch + transformers "
                     f"imported, variant built) over its first 3 training steps"
                     f"{'' if reset else ' AND the build'}; (+n) = its rise over the RSS "
                     "just before training.")
    else:
        lines.append("- memory: CUDA allocator peak of one training step above what was "
                     "allocated before it, + the variant's parameters and AdamW state.")
    for res in [r for r in rows if r["variant"] in ("residual", "batched")]:
        lines.append(f"- targets{'' if not cpu else ' (set for GPU; informative here)'}: "
                     f"{res['variant']} train >= 0.97x dense: {res['train_ratio']:.3f} "
                     f"({'met' if res['train_ratio'] >= 0.97 else 'NOT met'}); inference "
                     f"equal to dense: latency ratio {res['infer_ratio']:.3f}.")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=PRESETS, help="preset (default: full on CUDA, else small)")
    ap.add_argument("--compile", action="store_true", help="torch.compile every variant")
    ap.add_argument("--mode", help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: on a "
                    "shared machine more threads are slower and far noisier)")
    ap.add_argument("--steps", type=int, help="timed training steps per round")
    ap.add_argument("--rounds", type=int, help="interleaved rounds")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    ap.add_argument("--mem-child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    size = args.size or ("full" if device.type == "cuda" else "small")
    p = dict(PRESETS[size])
    p["warmup"] += 2 if args.compile else 0  # the first calls compile
    steps, rounds = args.steps or p["steps"], args.rounds or p["rounds"]
    if args.mem_child:
        return mem_child(args.mem_child, p, device, args.compile, args.mode)

    load_start = os.getloadavg()[0]
    variants = ["dense"] + [v for v in args.variants if v != "dense"]
    print(f"building {', '.join(variants)} ({size}, {device_name(device)})", flush=True)
    runners = [Runner(v, p, device, args.compile, args.mode) for v in variants]
    print("warm-up", flush=True)
    for r in runners:
        for _ in range(p["warmup"]):
            r.train_step()
        for _ in range(2):
            r.infer()
    train = interleaved(runners, "train_step", steps, rounds, "train")
    infer = interleaved(runners, "infer", p["infer_reps"], rounds, "infer")
    memory = {}
    for r in runners:
        print(f"  memory: {r.name}", flush=True)
        memory[r.name] = cuda_memory(r) if device.type == "cuda" else cpu_memory(r.name, args, size)

    ntok = p["batch"] * p["seq"]
    rows = [dict(variant=r.name, unique_params=r.counts.unique_params,
                 layer_params=r.counts.layer_params,
                 dense_layer_params=r.counts.dense_layer_params,
                 compression=r.counts.compression,
                 train_tok_s=ntok / statistics.median(train[r.name]),
                 train_ratio=paired_ratio(train, r.name, inverse=True),
                 infer_ms=statistics.median(infer[r.name]) * 1e3,
                 infer_ratio=paired_ratio(infer, r.name), memory=memory[r.name],
                 train_s_per_step=train[r.name], infer_s_per_forward=infer[r.name])
            for r in runners]
    env = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    meta = dict(command=env + " ".join(shlex.quote(a) for a in ["python"] + sys.argv),
                date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                device=device_name(device), device_type=device.type, size=size,
                torch=torch.__version__, transformers=transformers.__version__,
                load=(load_start, os.getloadavg()[0]),
                compile=f"{args.compile} (mode {args.mode})" if args.mode else args.compile,
                dtype="bf16 autocast" if device.type == "cuda" else "fp32",
                preset=p, steps=steps, rounds=rounds)
    text = render(meta, rows)
    print("\n" + text)
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"core-{device.type}-{size}" + ("-compile" if args.compile else "") + (
        f"-{args.mode}" if args.compile and args.mode else "")
    write_atomic(out_dir / f"{stem}.md", text)
    write_atomic(out_dir / f"{stem}.json", json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")
    print(f"wrote {out_dir / stem}.md and .json")


if __name__ == "__main__":
    main()
