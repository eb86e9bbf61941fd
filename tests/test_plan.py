import pytest

from layershare import LayershareError, SharingPlan


@pytest.mark.parametrize("strategy, expected", [
    ("sequence", (0, 0, 1, 1, 2, 2)),
    ("cycle", (0, 1, 2, 0, 1, 2)),
    ("cycle-rev", (0, 1, 2, 2, 1, 0)),
    ("sandwich", (0, 1, 1, 2, 2, 3)),
])
def test_strategies_six_layers_k2(strategy, expected):
    assert SharingPlan.build(6, 2, strategy).groups == expected


def test_uneven_and_longer_plans():
    assert SharingPlan.build(5, 2, "sequence").groups == (0, 0, 1, 1, 2)
    assert SharingPlan.build(9, 3, "cycle-rev").groups == (0, 1, 2, 0, 1, 2, 2, 1, 0)
    assert SharingPlan.build(6, 6, "sandwich").groups == (0, 1, 1, 1, 1, 2)  # one shared middle
    assert SharingPlan.build(4, 1, "cycle").groups == (0, 1, 2, 3)


def test_explicit_plan_renumbers_and_reports_members():
    plan = SharingPlan.build(6, strategy=[5, 5, 2, 2, 5, 5])
    assert plan.groups == (0, 0, 1, 1, 0, 0)
    assert plan.members(0) == [0, 1, 4, 5] and plan.num_groups == 2
    assert plan.source(5) == 0 and plan.source(3) == 2


@pytest.mark.parametrize("args, message", [
    ((6, 0, "sequence"), "group size"),
    ((6, 7, "sequence"), "larger than the stack"),
    ((6, 2, "zigzag"), "unknown sharing strategy"),
    ((6, 2, [0, 0, 1]), "one group id per layer"),
    ((3, 2, [0, -1, 1]), "integers >= 0"),
    ((2, 1, "sandwich"), "at least 3 layers"),
])
def test_invalid_plans_raise_clear_errors(args, message):
    with pytest.raises(LayershareError, match=message):
        SharingPlan.build(*args)
