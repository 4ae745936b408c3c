import pytest
import torch

from vitcourse.data import images as images_mod
from vitcourse.data import load, subset, synthetic


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(KeyError, match="cifar10.*fashion_mnist.*synthetic"):
        load("imagenet")
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load("synthetic", "val")


def test_synthetic_shapes_types_and_determinism():
    a = synthetic("train", n=50, seed=1)
    b = load("synthetic", "train", n=50, seed=1)
    assert a.images.shape == (50, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.labels.dtype == torch.int64 and len(a.classes) == 10
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, synthetic("test", n=50, seed=1).images)
    gray = synthetic(n=20, image_size=28, channels=1)
    assert gray.shape == (1, 28, 28) and len(gray.mean) == 1


def _nearest_centroid_accuracy(train_x, train_y, test_x, test_y, k):
    centroids = torch.stack([train_x[train_y == c].mean(0) for c in range(k)])
    pred = torch.cdist(test_x, centroids).argmin(1)
    return (pred == test_y).float().mean().item()


def test_synthetic_classes_need_spatial_structure():
    """Per-channel means carry no class information; the spatial (Fourier) structure carries it all."""
    train, test = synthetic("train", n=2000), synthetic("test", n=1000)
    chan_mean = lambda d: d.images.float().mean((2, 3))  # noqa: E731
    acc_means = _nearest_centroid_accuracy(chan_mean(train), train.labels, chan_mean(test), test.labels, 10)
    assert acc_means < 0.16, f"per-channel means predict the class ({acc_means:.2f}); chance is 0.10"
    spectrum = lambda d: torch.fft.rfft2(d.images.float().mean(1)).abs().flatten(1).log1p()  # noqa: E731
    acc_space = _nearest_centroid_accuracy(spectrum(train), train.labels, spectrum(test), test.labels, 10)
    assert acc_space > 0.9, f"the spatial structure should separate the classes, got {acc_space:.2f}"


def test_fashion_mnist_from_disk_and_cache(fashion_mnist_available, tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_DATA", str(tmp_path))
    test = load("fashion_mnist", "test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[0] == "T-shirt/top" and 0.25 < test.mean[0] < 0.32  # train-split statistics
    assert (tmp_path / "tensors" / "fashion_mnist-test.pt").exists()
    # The second load reads the cache: it works even when the converter is gone.
    monkeypatch.setitem(images_mod.LOADERS, "fashion_mnist", None)
    again = load("fashion_mnist", "test")
    assert torch.equal(again.images, test.images)


def test_corrupt_cache_is_rebuilt(fashion_mnist_available, tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_DATA", str(tmp_path))
    (tmp_path / "tensors").mkdir()
    (tmp_path / "tensors" / "fashion_mnist-test.pt").write_bytes(b"not a tensor file")
    (tmp_path / "tensors" / "fashion_mnist-train.pt").write_bytes(b"")
    assert len(load("fashion_mnist", "test")) == 10000


def test_missing_data_without_network_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(images_mod, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load("fashion_mnist", root=tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="VITCOURSE_DATA"):
        load("cifar10", root=tmp_path, download=False)


def test_failed_download_is_a_clear_error_not_a_switch(tmp_path, monkeypatch):
    import torchvision

    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("Dataset not found") if not download else OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    with pytest.raises(FileNotFoundError, match="download failed: network unreachable"):
        load("cifar10", root=tmp_path)


def test_subset_is_stratified_and_nested():
    data = synthetic("train", n=1000)
    small, large = subset(data, 0.1, seed=3), subset(data, 0.5, seed=3)
    assert torch.bincount(small.labels).tolist() == [10] * 10
    assert torch.bincount(subset(data, 200).labels).tolist() == [20] * 10
    assert [len(subset(data, k)) for k in (37, 1000, 999)] == [37, 1000, 999]  # exact counts
    uneven = subset(data, 0.33)
    assert len(uneven) == 330 and set(torch.bincount(uneven.labels).tolist()) == {33}
    as_rows = lambda d: {tuple(x.flatten()[:64].tolist()) for x in d.images}  # noqa: E731
    assert as_rows(small) <= as_rows(large)
    with pytest.raises(ValueError, match="fraction"):
        subset(data, 1.5)
    with pytest.raises(ValueError, match="count"):
        subset(data, 5000)


def test_dataset_override(monkeypatch):
    from vitcourse.data import dataset_for_profile
    monkeypatch.setenv("VITCOURSE_PROFILE", "gpu")
    monkeypatch.delenv("VITCOURSE_DATASET", raising=False)
    assert dataset_for_profile() == "cifar10"
    monkeypatch.setenv("VITCOURSE_DATASET", "fashion_mnist")
    assert dataset_for_profile() == "fashion_mnist"
    monkeypatch.setenv("VITCOURSE_DATASET", "imagenet")
    with pytest.raises(ValueError, match="cifar10, cifar100, fashion_mnist, synthetic"):
        dataset_for_profile()
