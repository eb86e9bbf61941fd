"""The switch that turns CI's skips into failures (tests/requirements.py)."""

import pytest
from requirements import need, need_module, need_tool


def test_a_missing_thing_skips_unless_required(monkeypatch):
    monkeypatch.setenv("LAYERSHARE_REQUIRE", "onnx")
    with pytest.raises(pytest.skip.Exception, match="no widget"):
        need("widget", False, "no widget")
    with pytest.raises(pytest.skip.Exception, match="layershare\\[speech\\]"):
        need_module("no_such_module_anywhere", "speech")
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-anywhere"):
        need_tool("no-such-tool-anywhere")
    need("widget", True, "no widget")  # present: nothing happens


@pytest.mark.parametrize("value", ["widget,speech,no-such-tool-anywhere", "all"])
def test_a_required_missing_thing_fails(monkeypatch, value):
    monkeypatch.setenv("LAYERSHARE_REQUIRE", value)
    with pytest.raises(pytest.fail.Exception, match="no widget.*requires widget"):
        need("widget", False, "no widget")
    with pytest.raises(pytest.fail.Exception, match="layershare\\[speech\\]"):
        need_module("no_such_module_anywhere", "speech")
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        need_tool("no-such-tool-anywhere")


def test_present_things_return(monkeypatch):
    monkeypatch.setenv("LAYERSHARE_REQUIRE", "all")
    assert need_module("json", "core").dumps(1) == "1"
    need_tool("python3")
