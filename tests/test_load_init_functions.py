"""layershare.load's meta-device build must not leave torch's init functions disabled for
models built later in the same process (transformers caches them on first import)."""

import subprocess
import sys
from pathlib import Path

SAVE = r"""
import transformers, layershare
model = transformers.BertModel(transformers.BertConfig(
    vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64))
model.save_pretrained(OUT + "-dense")
layershare.convert(model, method="residual", group_size=2, rank=2)
layershare.save(model, OUT)
print("ok")
"""

SCRIPT = r"""
import layershare
layershare.load(OUT)        # a fresh process: transformers' init module first imported here
import transformers
import torch, transformers.initialization as init
assert init.TORCH_INIT_FUNCTIONS["zeros_"] is torch.nn.init.zeros_, (
    "init functions captured as no-ops")
fresh = transformers.BertModel.from_pretrained(OUT + "-dense")  # initialises unsaved buffers
assert int(fresh.embeddings.token_type_ids.abs().max()) == 0, "token_type_ids not zeroed"
print("ok")
"""


def test_models_built_after_load_are_initialised(tmp_path):
    src = str(Path(__file__).resolve().parents[1] / "src")
    head = f"import sys; sys.path.insert(0, {src!r}); OUT = {str(tmp_path / 'c')!r}\n"
    for script in (SAVE, SCRIPT):
        run = subprocess.run([sys.executable, "-c", head + script], capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
