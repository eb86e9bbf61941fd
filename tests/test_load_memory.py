"""``layershare.load`` never allocates the dense model (README, checkpoint.py).

A 24-layer GPT-2 of width 512 is ~300 MB of dense fp32 weights; tied across all its layers
its checkpoint is ~13 MB. Loading it in a fresh process must raise the resident set by about
the checkpoint, never by the dense size: were the meta-device construction of ``load``
removed (``_parameters_on_meta``), the dense model would be built and initialised first and
the peak would grow by >= 300 MB. The checkpoint is written by another process, so nothing
of the dense model is in the measuring process's high-water mark.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "PATH": "/usr/bin:/bin"}

WRITE = """
import sys, torch, transformers, layershare
cfg = transformers.GPT2Config(vocab_size=96, n_positions=64, n_embd=512, n_layer=24, n_head=8)
dense = transformers.GPT2LMHeadModel(cfg)
print(sum(p.numel() * 4 for p in dense.parameters()))
model = layershare.convert(dense, method="tied", group_size=24)
layershare.save(model, sys.argv[1])
"""

# VmHWM (this process image's peak), not ru_maxrss: ru_maxrss also counts the pages of the
# forked parent (pytest) before exec, so it would measure the test runner, not the load.
LOAD = """
import sys, torch, transformers, layershare
import layershare.checkpoint, transformers.models.gpt2.modeling_gpt2
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
model = layershare.load(sys.argv[1])
print(max(0, status("VmHWM") - before))
"""


def _run(code, *args) -> int:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def test_load_never_allocates_the_dense_model(tmp_path):
    dense_bytes = _run(WRITE, tmp_path / "ck")
    stored = (tmp_path / "ck" / "model.safetensors").stat().st_size
    assert dense_bytes > 20 * stored  # the test means something: dense >> checkpoint
    grown = _run(LOAD, tmp_path / "ck")
    assert grown < stored + dense_bytes / 4, (grown, stored, dense_bytes)


# A Llama of 12 layers x width 768 (~320 MB of dense layer weights) saved as a transformers
# directory; compressed data-free by ``layershare compress``, whose layer-by-layer reader
# (formats/lazy.py) holds one block of dense weights at a time besides the small result.
WRITE_LLAMA = """
import sys, transformers
cfg = transformers.LlamaConfig(vocab_size=96, hidden_size=768, intermediate_size=2048,
                               num_hidden_layers=12, num_attention_heads=12,
                               num_key_value_heads=12, max_position_embeddings=64)
dense = transformers.LlamaForCausalLM(cfg)
dense.save_pretrained(sys.argv[1])
print(sum(p.numel() * 4 for p in dense.model.layers.parameters()))
"""

COMPRESS = """
import sys
from layershare.cli import main
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
import layershare.cli.compress, layershare.formats.lazy, transformers.models.llama.modeling_llama
import layershare.compress, layershare.surgery
before = status("VmRSS")
rc = main(["compress", sys.argv[1], "--method", "lowrank", "--group-size", "1", "--rank", "4",
           "--data", "none", "--quiet", "--out", sys.argv[2]])
assert rc == 0
print(max(0, status("VmHWM") - before))
"""


def test_lazy_compress_holds_one_block_of_dense_weights(tmp_path):
    """The README's "besides the compressed model, memory holds one block of dense weights":
    the peak of compressing must stay far below the dense stack (one of 12 blocks is ~27 MB);
    reading the whole model first adds all of it and more (seen: 93 MiB lazy, 595 MiB eager,
    324 MiB of dense layers)."""
    dense_layers = _run(WRITE_LLAMA, tmp_path / "dense")
    grown = _run(COMPRESS, tmp_path / "dense", tmp_path / "small")
    assert grown < dense_layers / 2, (grown, dense_layers)  # eager: ~1.8x dense_layers
