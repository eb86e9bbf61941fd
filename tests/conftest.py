import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from transformers.utils import logging  # noqa: E402

logging.set_verbosity_error()
logging.disable_progress_bar()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def onnx_exports(tmp_path_factory):
    """name -> (model, checkpoint, ONNX export dir, int8 export dir or None), built on first
    use (tests/onnx_helpers.py)."""
    import onnx_helpers

    onnx_helpers.require_onnx()
    root = tmp_path_factory.mktemp("onnx")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = onnx_helpers.build(root, name)
        return cache[name]

    return get
