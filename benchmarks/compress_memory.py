"""Peak memory of ``layershare compress`` on a ~1B-parameter checkpoint, against its size.

    python benchmarks/compress_memory.py --dir runs/llama-1b [--layers 22] [--keep 0.5]

Writes (once) a random-weight Llama-shaped transformers checkpoint (TinyLlama-1.1B's shape:
d=2048, FFN 5632, 32 heads, 4 KV heads, 22 layers, SmolLM2's tokenizer and vocabulary of
49,152; fp32 safetensors, one shard per layer as real checkpoints are sharded), then runs in
fresh processes, one after the other:

* ``import``: python importing torch, transformers and layershare (the baseline);
* ``load``: ``AutoModelForCausalLM.from_pretrained`` of the checkpoint (what any dense tool needs);
* ``compress``: ``layershare compress DIR --method lowrank --group-size 1 --keep F --calib brown``
  (calibrated, sequential, layer by layer: formats/lazy.py reads one block at a time).

Peak memory is the child's resident-set high-water mark (VmHWM, file pages included), polled.
Results go to DIR/memory.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_checkpoint(directory: Path, layers: int) -> int:
    """A random Llama checkpoint in per-layer safetensors shards; returns its bytes."""
    import torch
    import transformers
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT / "src"))
    from layershare.formats.hub import save_tokenizer

    config = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
        tie_word_embeddings=False, architectures=["LlamaForCausalLM"])
    directory.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    d, f, kv = 2048, 5632, 2048 // 32 * 4
    shards, weight_map = [], {}
    outer = {"model.embed_tokens.weight": rand(49152, d), "lm_head.weight": rand(49152, d),
             "model.norm.weight": torch.ones(d)}
    shards.append(("model-outer.safetensors", outer))
    for l in range(layers):
        p = f"model.layers.{l}."
        shards.append((f"model-layer{l:02d}.safetensors", {
            p + "self_attn.q_proj.weight": rand(d, d), p + "self_attn.k_proj.weight": rand(kv, d),
            p + "self_attn.v_proj.weight": rand(kv, d), p + "self_attn.o_proj.weight": rand(d, d),
            p + "mlp.gate_proj.weight": rand(f, d), p + "mlp.up_proj.weight": rand(f, d),
            p + "mlp.down_proj.weight": rand(d, f),
            p + "input_layernorm.weight": torch.ones(d),
            p + "post_attention_layernorm.weight": torch.ones(d)}))
    total = 0
    for name, tensors in shards:  # one shard in memory at a time
        save_file(tensors, directory / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in tensors})
        total += (directory / name).stat().st_size
        tensors.clear()
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}))
    config.save_pretrained(directory)
    save_tokenizer("smollm2-135m", directory)
    return total


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def peak_of(cmd: list[str], log: Path) -> tuple[int, float]:
    """(peak RSS bytes, seconds) of a fresh child process running ``cmd``.

    The child's own high-water mark (VmHWM), polled while it runs: ``ru_maxrss`` from wait4
    is not usable here, since a child spawned by a large parent starts with the parent's mark.
    """
    start = time.perf_counter()
    peak = 0
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        while proc.poll() is None:
            peak = max(peak, _hwm(proc.pid))
            time.sleep(0.2)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed, see {log}")
    return peak, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--calib-tokens", type=int, default=1024)
    ap.add_argument("--seq-len", type=int, default=256)
    args = ap.parse_args()
    ckpt = args.dir / "checkpoint"
    if not (ckpt / "config.json").is_file():
        write_checkpoint(ckpt, args.layers)
    size = sum(p.stat().st_size for p in ckpt.glob("*.safetensors"))
    py = sys.executable
    env_src = f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
    rows = {}
    rows["import"] = peak_of([py, "-c", env_src + "import torch, transformers, layershare, "
                              "layershare.compress, layershare.cli"], args.dir / "import.log")
    rows["load (transformers, dense)"] = peak_of(
        [py, "-c", env_src + "import transformers; "
         f"m = transformers.AutoModelForCausalLM.from_pretrained({str(ckpt)!r}); "
         "print(sum(p.numel() for p in m.parameters()))"], args.dir / "load.log")
    out = args.dir / "compressed"
    shutil.rmtree(out, ignore_errors=True)  # an earlier run's output
    rows[f"compress lowrank K=1 keep {args.keep}"] = peak_of(
        [py, "-c", env_src + "import sys; from layershare.cli import main; sys.exit(main())",
         "compress", str(ckpt), "--method", "lowrank", "--group-size", "1", "--keep",
         str(args.keep), "--calib", "brown", "--calib-tokens", str(args.calib_tokens),
         "--seq-len", str(args.seq_len), "--batch-size", "4", "--quiet", "--out", str(out)],
        args.dir / "compress.log")
    out_size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    params = size // 4
    lines = [f"checkpoint: {params / 1e9:.2f}B parameters, {size / 2**30:.2f} GiB of fp32 "
             f"safetensors; compressed: {out_size / 2**30:.2f} GiB", "",
             "| process | peak RSS | x checkpoint size | seconds |", "| --- | --- | --- | --- |"]
    for name, (peak, seconds) in rows.items():
        lines.append(f"| {name} | {peak / 2**30:.2f} GiB | {peak / size:.2f} | {seconds:.0f} |")
    print("\n".join(lines))
    (args.dir / "memory.json").write_text(json.dumps(
        {"checkpoint_bytes": size, "compressed_bytes": out_size, "calib_tokens": args.calib_tokens,
         "rows": {k: {"peak_rss": v[0], "seconds": v[1]} for k, v in rows.items()}}, indent=2))
    (args.dir / "memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
