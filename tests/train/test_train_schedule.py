"""Learning-rate schedule shapes."""

import pytest

from layershare.train.schedule import lr_at


def test_warmup_is_linear_to_peak():
    lrs = [lr_at(s, 1.0, 10, 100) for s in range(10)]
    assert lrs == pytest.approx([(s + 1) / 10 for s in range(10)])


def test_cosine_decays_to_min_lr():
    lrs = [lr_at(s, 1.0, 10, 100, "cosine", 0.1) for s in range(10, 101)]
    assert lrs[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.1)
    assert lr_at(55, 1.0, 10, 100, "cosine", 0.0) == pytest.approx(0.5)  # halfway


def test_inverse_sqrt():
    assert lr_at(9, 1.0, 10, 1000, "inverse-sqrt") == pytest.approx(1.0)
    assert lr_at(39, 1.0, 10, 1000, "inverse-sqrt") == pytest.approx(0.5)
    assert lr_at(999, 1.0, 10, 1000, "inverse-sqrt") > 0.0


def test_constant_and_no_warmup():
    assert lr_at(0, 2.0, 0, 10, "constant") == 2.0
    assert lr_at(0, 2.0, 0, 10, "cosine") == pytest.approx(2.0)
    with pytest.raises(ValueError):
        lr_at(50, 1.0, 0, 100, "linear")
