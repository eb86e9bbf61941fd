"""Deploying the smaller model: ONNX Runtime, fp32/int8/int4, sharing against quantization alone.

    python benchmarks/bench_deploy.py --out runs/deploy [--windows 16] [--rows dense,svd-k0.5,...]
        [--artifacts /work/artifacts/smollm2]

Rows: SmolLM2-135M dense, and the compressed layershare checkpoints in ARTIFACTS, each made by
``layershare compress smollm2-135m --calib brown --calib-tokens 8192 --keep F``: ``svd1-kF``
(``--method lowrank --group-size 1``: per-layer whitened SVD, the best lowrank setting),
``res3-kF`` (``--method residual --group-size 3``, the best residual one) at F = 0.5 and 0.8,
and ``svd-k0.5`` (``--method lowrank --group-size 2``: Basis Sharing K=2), each exported
with ``layershare.formats.onnx.export`` (fp32; the exporter's own checks run) and quantized
with ``onnx_quantize.quantize_weights`` (what ``--quantize int8`` / ``int4`` runs, applied to a
copy of the fp32 export; ``--dtypes``). Every row runs in two FRESH subprocesses with ONNX
Runtime alone (no torch imported; layershare/deploy): the timed one (optionally under
``--wrap``) gives peak RSS (VmHWM of the process: imports, session, generation) while
generating 128 tokens greedily after a 512-token prompt (the first Brown test window),
prefill ms and decode tokens/s; the other the perplexity over the first --windows Brown test
windows of 512 tokens and (fp32) the greedy continuations. A PyTorch subprocess per model
gives the PyTorch perplexity on the same windows and greedy tokens (128) on 5 prompts (32
tokens each, Brown test windows after the scored ones), which the fp32 ORT child must
reproduce. Each finished row goes to OUT/results.jsonl (a rerun resumes); OUT/deploy.md and
OUT/deploy.png (perplexity against file bytes) are written at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ROWS = ("dense", "svd1-k0.8", "res3-k0.8", "svd1-k0.5", "res3-k0.5", "svd-k0.5")
LABELS = {"svd-k0.5": "bs2-k0.5"}  # the artifact's name predates the K=1 default
PROMPTS, PROMPT_LEN, NEW = 5, 32, 128


def windows(tokenizer_dir: Path, count: int, extra: int):
    """(scored windows, 5 prompts) as int64 numpy arrays, the transformers tokenizer's ids."""
    import numpy as np

    from layershare.data.windows import read_text, token_windows
    from layershare.formats.hub import auto_tokenizer

    tok = auto_tokenizer(tokenizer_dir)
    w = token_windows(tok, read_text("brown", "test"), 512, count + extra).numpy()
    prompts = w[count:count + extra, :PROMPT_LEN]
    return w[:count].astype(np.int64), prompts.astype(np.int64)


def child_ort(args) -> None:
    """One measurement in a fresh process, ONNX Runtime only: ``speed`` (load, then 128 greedy
    tokens after the 512-token prompt: peak RSS, prefill, decode) or ``quality`` (perplexity
    and the greedy continuations). Two processes, so that ``--wrap`` can hold the machine
    quiet for the timed one only."""
    import numpy as np

    from layershare.deploy.ort_generate import OrtCausalLM, eos_ids
    from layershare.measure import peak_rss_bytes

    data = np.load(args.data)
    eos = eos_ids(args.child_dir)  # banned, as the PyTorch child's min_new_tokens does
    t0 = time.perf_counter()
    model = OrtCausalLM(args.child_dir, threads=args.threads)
    load_s = time.perf_counter() - t0
    result = {"torch_imported": "torch" in sys.modules}
    if args.part == "speed":
        _, timing = model.greedy(data["windows"][0].tolist(), NEW, eos=eos, exact=True)
        result.update(peak_rss=peak_rss_bytes(), prefill_ms=timing.prefill_s * 1e3,
                      decode_tps=timing.decode_tokens_per_s, load_s=load_s,
                      load_1min=os.getloadavg()[0])
    else:
        result["greedy"] = [model.greedy(p.tolist(), NEW, eos=eos, exact=True)[0]
                            for p in data["prompts"]] if args.greedy else []
        t0 = time.perf_counter()
        result["ppl_ort"] = model.perplexity(data["windows"])
        result["ppl_s"] = time.perf_counter() - t0
    print(json.dumps(result))


def child_torch(args) -> None:
    """PyTorch perplexity and greedy tokens of one model (a layershare checkpoint or dense)."""
    import numpy as np
    import torch

    from layershare.evaluate.perplexity import lm_quality
    from layershare.formats.onnx import load_source

    torch.set_num_threads(args.threads)
    data = np.load(args.data)
    model, _ = load_source(args.child_dir)
    model = model.float().eval() if not getattr(model, "is_quantized", False) else model.eval()
    quality = lm_quality(model, torch.from_numpy(data["windows"]), batch_size=1, progress=False)
    greedy = []
    with torch.no_grad():
        for p in data["prompts"]:
            ids = torch.from_numpy(p)[None]
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                                 min_new_tokens=NEW, do_sample=False, pad_token_id=0)
            greedy.append(out[0, ids.shape[1]:].tolist())
    print(json.dumps({"ppl_torch": quality["perplexity"], "greedy": greedy}))


def run_child(kind: str, directory, data: Path, threads: int, greedy: bool = True,
              part: str = "quality", wrap: list[str] = ()) -> dict:
    cmd = [*wrap, sys.executable, __file__, "--child", kind, "--child-dir", str(directory),
           "--data", str(data), "--threads", str(threads), "--part", part] + \
        (["--greedy"] if greedy else [])
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} child failed on {directory}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_all(name: str, src, onnx_root: Path, dtypes: list[str]) -> dict[str, Path]:
    """dtype -> export directory: fp32 exported once, each quantized dtype from a copy of it."""
    from layershare.formats.onnx import export, quantize_export

    fp32 = onnx_root / name
    if not (fp32 / "onnx.json").is_file():
        t0 = time.perf_counter()
        export(src, fp32, progress=lambda *_: None)
        print(f"  exported {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    dirs = {"fp32": fp32}
    for dtype in dtypes:
        if dtype == "fp32":
            continue
        dirs[dtype] = onnx_root / f"{name}-{dtype}"
        if not (dirs[dtype] / "onnx.json").is_file():
            quantize_export(fp32, dirs[dtype], dtype)
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "deploy")
    ap.add_argument("--artifacts", type=Path, default=Path("/work/artifacts/smollm2"))
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtypes", default="fp32,int8", help="fp32,int8,int4: the rows' weights")
    ap.add_argument("--wrap", default="", help="command prefix for the timed children, e.g. a "
                    "script that pauses other work on a shared machine")
    ap.add_argument("--part", choices=("speed", "quality"), default="quality")
    ap.add_argument("--child", choices=("ort", "torch"))
    ap.add_argument("--child-dir")
    ap.add_argument("--data")
    ap.add_argument("--greedy", action="store_true", help="(child) the 5 greedy continuations")
    args = ap.parse_args()
    if args.child:
        return child_ort(args) if args.child == "ort" else child_torch(args)

    from layershare.formats.hub import quiet_transformers
    from layershare.formats.pretrained import resolve
    quiet_transformers()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    done = {(r["row"], r["dtype"]) for r in map(json.loads, log.read_text().splitlines())} \
        if log.is_file() else set()
    sources = {name: (resolve("smollm2-135m") if name == "dense" else args.artifacts / name)
               for name in args.rows.split(",")}
    data = args.out / "data.npz"
    if not data.is_file():
        import numpy as np
        scored, prompts = windows(resolve("smollm2-135m"), args.windows, PROMPTS)
        np.savez(data, windows=scored, prompts=prompts)
    start = time.perf_counter()
    for name, src in sources.items():
        dtypes = args.dtypes.split(",")
        if {(name, d) for d in dtypes} <= done:
            continue
        print(f"{name}: export", flush=True)
        dirs = export_all(name, src, args.out / "onnx", dtypes)
        earlier = [r for r in map(json.loads, log.read_text().splitlines())
                   if r["row"] == name and r["dtype"] == "fp32"] if log.is_file() else []
        if earlier:  # the PyTorch figures are in the fp32 row already (the others are redone)
            ref = {"ppl_torch": earlier[0]["ppl_torch"], "greedy": []}
        else:
            print(f"{name}: PyTorch", flush=True)
            ref = run_child("torch", src, data, args.threads)
        for dtype in dtypes:
            directory = dirs[dtype]
            if (name, dtype) in done:
                continue
            print(f"{name} {dtype}: ONNX Runtime", flush=True)
            got = run_child("ort", directory, data, args.threads, greedy=dtype == "fp32")
            got.update(run_child("ort", directory, data, args.threads, part="speed",
                                 wrap=shlex.split(args.wrap)))
            meta = json.loads((directory / "onnx.json").read_text())
            same = [a == b for a, b in zip(got["greedy"], ref["greedy"])]  # fp32 rows only
            row = {"row": name, "dtype": dtype, "file_bytes": meta[dtype]["file_bytes"],
                   "unique_bytes": meta["fp32"]["unique_bytes"],
                   "initializer_bytes": meta[dtype]["initializer_bytes"],
                   "peak_rss": got["peak_rss"], "prefill_ms": got["prefill_ms"],
                   "decode_tps": got["decode_tps"], "ppl_ort": got["ppl_ort"],
                   "ppl_torch": ref["ppl_torch"], "greedy_same": sum(same),
                   "greedy_first_diff": [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                                              None) for a, b in zip(got["greedy"], ref["greedy"])],
                   "torch_imported": got["torch_imported"], "windows": args.windows,
                   "load_1min": got["load_1min"]}
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"  {json.dumps(row)}  [{time.perf_counter() - start:.0f} s]", flush=True)
    report(args.out, [json.loads(x) for x in log.read_text().splitlines()])


def report(out: Path, rows: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mib = 2 ** 20
    lines = ["| model | weights | file MiB | file / unique weights | peak RSS MiB | prefill ms "
             "(512 tok) | decode tok/s | ppl PyTorch fp32 | ppl ORT | ORT vs PyTorch | "
             "greedy = PyTorch (5 x 128) |", "|" + "---|" * 11]
    for r in rows:
        gap = r["ppl_ort"] / r["ppl_torch"] - 1
        lines.append(
            f"| {LABELS.get(r['row'], r['row'])} | {r['dtype']} | {r['file_bytes'] / mib:.1f} | "
            f"{r['file_bytes'] / r['unique_bytes']:.3f} | {r['peak_rss'] / mib:.0f} | "
            f"{r['prefill_ms']:.0f} | {r['decode_tps']:.1f} | {r['ppl_torch']:.2f} | "
            f"{r['ppl_ort']:.2f} | {gap * 100:+.2f}% | "
            f"{str(r['greedy_same']) + '/5' if r['dtype'] == 'fp32' else '-'} |")
    (out / "deploy.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for dtype, marker in (("fp32", "o"), ("int8", "s"), ("int4", "^")):
        sel = [r for r in rows if r["dtype"] == dtype]
        ax.scatter([r["file_bytes"] / mib for r in sel], [r["ppl_ort"] for r in sel],
                   marker=marker, label=f"ONNX Runtime {dtype}")
        for r in sel:
            ax.annotate(LABELS.get(r["row"], r["row"]), (r["file_bytes"] / mib, r["ppl_ort"]),
                        fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("file size (MiB, model.onnx + data)")
    ax.set_ylabel(f"perplexity, Brown test ({rows[0]['windows']} x 512 tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("SmolLM2-135M: sharing + quantization vs quantization alone")
    fig.tight_layout()
    fig.savefig(out / "deploy.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
