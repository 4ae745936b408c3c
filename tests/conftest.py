import pytest
import torch

from vitcourse.data.images import _find_fashion_files, data_root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)


@pytest.fixture
def fashion_mnist_available():
    if _find_fashion_files(data_root(), "train") is None or _find_fashion_files(data_root(), "test") is None:
        pytest.skip("Fashion-MNIST is not on disk (install Debian's dataset-fashion-mnist, or set "
                    "$VITCOURSE_DATA to a folder with the IDX files); real-data test skipped")
