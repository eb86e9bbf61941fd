import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is faster than two, and far faster when the
    machine is busy (intra-op threads spin waiting for a core)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
