import importlib
import os

import pytest
import torch

from vitcourse.data.images import _find_fashion_files, data_root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _require(what, reason: str):
    """Something the suite needs: a module name (imported and returned) or a condition (returned).

    Where it is missing, a developer's run skips the test saying ``reason``; in CI (``CI=true``) the
    test fails instead, so that a dependency or data set that did not install cannot turn a run green.
    """
    if isinstance(what, str):
        try:
            return importlib.import_module(what)
        except ImportError as err:
            reason = f"{reason} ({type(err).__name__}: {err})"
            found = None
    else:
        found = what
    if found:
        return found
    if in_ci():
        pytest.fail(f"CI=true and a requirement of this test is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def require():
    """``require(module_name_or_condition, reason)``: see ``_require``."""
    return _require


@pytest.fixture
def timm():
    """The timm package, for the conversion and parity tests against timm's models."""
    return _require("timm", "timm is not installed (pip install timm); the timm parity test is skipped")


@pytest.fixture
def fashion_mnist_available():
    _require(_find_fashion_files(data_root(), "train") is not None
             and _find_fashion_files(data_root(), "test") is not None,
             "Fashion-MNIST is not on disk (install Debian's dataset-fashion-mnist, or set "
             "$VITCOURSE_DATA to a folder with the IDX files); real-data test skipped")
