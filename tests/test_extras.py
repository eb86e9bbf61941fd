"""A missing optional dependency is one line naming the extra that installs it."""

import sys

import pytest

from layershare.errors import LayershareError
from layershare.extras import EXTRAS, require


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_missing_extra_names_it(module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(LayershareError) as info:
        require(module)
    message = str(info.value)
    assert "\n" not in message and f"pip install 'layershare[{EXTRAS[module][1]}]'" in message


def test_plots_and_bleu_name_their_extras(tmp_path, monkeypatch):
    from layershare.train.metrics import bleu
    from layershare.train.report import plot_losses

    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "train", "loss": 1.0}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(LayershareError, match=r"layershare\[train\]"):
        plot_losses(tmp_path)
    monkeypatch.setitem(sys.modules, "sacrebleu", None)
    with pytest.raises(LayershareError, match=r"layershare\[eval\]"):
        bleu(["a b"], ["a b"])


def test_present_module_is_returned():
    import json
    assert require("json") is json
