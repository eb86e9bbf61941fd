"""``compress(target=local|original)`` compared on Brown *train* windows (the test split unseen).

    python benchmarks/select_target.py KEEP METHOD K local 1e-3 1e-2 ...

Each argument after K is a run: ``local`` (SVD-LLM's metric) or a ridge for
``target="original"`` (compress/whiten.py TARGET_RIDGE). Calibration: 8,192 tokens (32 x 256)
of Brown valid; perplexity on the first 8 windows of 512 tokens of Brown train. One JSON line
per run. Results: benchmarks/results/pretrained.md.
"""
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import layershare.compress.whiten as Wh  # noqa: E402
from layershare.compress import compress  # noqa: E402
from layershare.data.windows import read_text, token_windows  # noqa: E402
from layershare.evaluate.perplexity import lm_quality  # noqa: E402
from layershare.formats.hub import auto_tokenizer, from_local, quiet_transformers  # noqa: E402

torch.set_num_threads(1)
quiet_transformers()
tok = auto_tokenizer("smollm2-135m")
sel = token_windows(tok, read_text("brown", "train"), 512, 8)
cw = token_windows(tok, read_text("brown", "valid"), 256, 32)
calib = [{"input_ids": cw[i:i + 8]} for i in range(0, len(cw), 8)]
dense = from_local("smollm2-135m")
keep, method, K = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for name in sys.argv[4:]:
    model = copy.deepcopy(dense)
    if name == "local":
        opts = dict(target="local")
    else:
        Wh.TARGET_RIDGE = float(name)
        opts = dict(target="original")
    r = compress(model, calib, method=method, group_size=K, keep=keep, progress=False, **opts)
    q = lm_quality(model, sel)
    print(json.dumps({"keep": keep, "method": method, "K": K, "target": name,
                      "ppl_train8": q["perplexity"], "s": r.seconds}), flush=True)
