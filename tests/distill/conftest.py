"""Fixtures of the distillation tests: tiny teacher/student pairs (distill_helpers.py)."""

import pytest
import tiny_models as T
from distill_helpers import bert_nodrop, make


@pytest.fixture(scope="session")
def lm(tmp_path_factory) -> dict:
    return make(tmp_path_factory.mktemp("lm"), T.llama(), False, method="residual",
                group_size=2, rank=4)


@pytest.fixture(scope="session")
def encoder(tmp_path_factory) -> dict:
    return make(tmp_path_factory.mktemp("enc"), bert_nodrop(), True, method="residual",
                group_size=2, rank=4)
