"""The suite's own rule for missing dependencies and data: a skip on a developer's machine, a failure in CI."""
import pytest


def _outcome(require, what):
    """The exception ``require`` raises (a skip and a failure are both BaseExceptions, neither is the other)."""
    with pytest.raises(BaseException) as err:
        require(what, "the reason")
    return err


@pytest.mark.parametrize("missing", ["no_such_module_for_vitcourse_tests", False])
def test_a_missing_requirement_skips_outside_ci(require, monkeypatch, missing):
    monkeypatch.delenv("CI", raising=False)
    err = _outcome(require, missing)
    assert err.type is pytest.skip.Exception and "the reason" in str(err.value)


@pytest.mark.parametrize("missing", ["no_such_module_for_vitcourse_tests", False])
def test_a_missing_requirement_fails_in_ci(require, monkeypatch, missing):
    monkeypatch.setenv("CI", "true")
    err = _outcome(require, missing)
    assert err.type is pytest.fail.Exception, f"in CI a missing requirement must fail, got {err.type.__name__}"
    assert "CI=true" in str(err.value) and "the reason" in str(err.value)


def test_a_present_requirement_is_returned(require, monkeypatch):
    import math
    monkeypatch.setenv("CI", "true")
    assert require("math", "math is missing") is math
    assert require(True, "never missing") is True
