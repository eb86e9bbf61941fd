"""Bounded work: peak memory of ``layershare compress --data FILE --calib-tokens 16384`` on a
1 GB text file against a 1 MB one (data/windows.py reads and tokenizes only as far as the
asked tokens need).

    python benchmarks/bounded_read.py --out benchmarks/results

A tiny Llama with a word-level BPE is built in a temporary directory; each measurement is a
fresh process whose own peak resident set (``VmHWM``) is read at its end. Writes
``bounded-read.json`` and prints one line per file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = "the {} saw {} dogs near the {} river today\n"
WORDS = ["old", "young", "tall", "small", "three", "five", "wide", "cold", "long", "deep"]


def text_block(lines: int) -> str:
    return "".join(LINE.format(WORDS[i % 10], WORDS[(i // 10) % 10], WORDS[(i // 100) % 10])
                   for i in range(lines))


def build_model(directory: Path) -> Path:
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(text_block(300).splitlines(),
                            trainers.BpeTrainer(vocab_size=64, special_tokens=["<unk>"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=512)
    model_dir = directory / "model"
    transformers.LlamaForCausalLM(config).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    return model_dir


def write_text(path: Path, size: int) -> None:
    block = text_block(10_000)
    with open(path, "w") as fh:
        written = 0
        while written < size:
            fh.write(block)
            written += len(block)


def peak_rss(model_dir: Path, text: Path, out: Path) -> dict:
    code = ("from layershare.cli import main\n"
            f"rc = main(['compress', {str(model_dir)!r}, '--method', 'lowrank', '--keep', "
            f"'0.8', '--data', {str(text)!r}, '--calib-tokens', '16384', '--seq-len', '256', "
            f"'--quiet', '--out', {str(out)!r}])\n"
            "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
            "print(rc, hwm[0])\n")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1",
                               "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    rc, rss = proc.stdout.split()[-2:]
    if rc != "0":
        raise SystemExit(proc.stderr[-2000:])
    return {"file_bytes": text.stat().st_size, "peak_rss_kib": int(rss),
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bounded-") as tmp:
        tmp = Path(tmp)
        model_dir = build_model(tmp)
        rows = {}
        for name, size in (("1 MB", 10 ** 6), ("1 GB", 10 ** 9)):
            text = tmp / f"{name.replace(' ', '')}.txt"
            write_text(text, size)
            rows[name] = peak_rss(model_dir, text, tmp / f"out-{text.stem}")
            text.unlink()
            print(name, rows[name], flush=True)
    ratio = rows["1 GB"]["peak_rss_kib"] / rows["1 MB"]["peak_rss_kib"]
    result = {"command": "layershare compress TINY_LLAMA --method lowrank --keep 0.8 --data FILE "
                         "--calib-tokens 16384 --seq-len 256", "rows": rows,
              "peak_ratio_1GB_over_1MB": round(ratio, 3), "target": "<= 1.2"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bounded-read.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"peak memory 1 GB / 1 MB: {ratio:.3f}x (target <= 1.2)")


if __name__ == "__main__":
    main()
