import pytest
import torch
from dlt_helpers import tiny_lm


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared machine: one intra-op thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lm():
    return tiny_lm()
