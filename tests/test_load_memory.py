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
