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


def _pixel_stats(images):
    """Mean and std of all pixels on the 0..1 scale, in double precision (independent of the package's)."""
    x = images.double() / 255
    return x.mean().item(), x.std().item()


def test_fashion_mnist_from_disk_and_cache(fashion_mnist_available, tmp_path, monkeypatch):
    """The real files are read, both splits normalised with the train split's statistics, and cached."""
    monkeypatch.setenv("VITCOURSE_DATA", str(tmp_path))
    test = load("fashion_mnist", "test")
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes[0] == "T-shirt/top"
    train = load("fashion_mnist", "train")
    assert train.images.shape == (60000, 1, 28, 28)
    # Train mean 0.2860, test mean 0.2868: 8e-4 apart, far more than the float error allowed here.
    train_stats, test_stats = _pixel_stats(train.images), _pixel_stats(test.images)
    for data in (train, test):
        assert (data.mean[0], data.std[0]) == pytest.approx(train_stats, abs=1e-5)
        assert abs(data.mean[0] - test_stats[0]) > 5e-4
    assert (tmp_path / "tensors" / "fashion_mnist-test.pt").exists()
    # The second load reads the cache: it works even when the converter is gone.
    monkeypatch.setitem(images_mod.LOADERS, "fashion_mnist", None)
    again = load("fashion_mnist", "test")
    assert torch.equal(again.images, test.images)


CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _fake_cifar10(root, monkeypatch, per_batch=(3, 2, 2, 1, 2), test=4):
    """A tiny cifar-10-batches-py folder in torchvision's format (pickled dicts, each image one row of
    3072 bytes: the red plane, then green, then blue, each row-major), registered with its own md5s so
    that torchvision's integrity check and loader run unchanged. Returns {split: (NCHW images, labels)}."""
    import hashlib
    import pickle

    import numpy as np
    import torchvision
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    i, h, w = np.arange(sum(per_batch) + test)[:, None, None, None], np.arange(32)[:, None], np.arange(32)
    c = np.arange(3)[:, None, None]
    images = ((37 * i + 80 * c + 3 * h + 7 * w) % 256).astype(np.uint8)      # no symmetry in h and w
    labels = np.random.default_rng(0).integers(0, 10, len(images))
    md5 = lambda path: hashlib.md5(path.read_bytes()).hexdigest()  # noqa: E731
    files, start = [], 0
    for name, n in [*((f"data_batch_{k + 1}", n) for k, n in enumerate(per_batch)), ("test_batch", test)]:
        entry = {"data": images[start:start + n].reshape(n, 3072), "labels": labels[start:start + n].tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
        files.append([name, md5(folder / name)])
        start += n
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES}))
    cifar = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cifar, "train_list", files[:-1])
    monkeypatch.setattr(cifar, "test_list", files[-1:])
    monkeypatch.setattr(cifar, "meta", {**cifar.meta, "md5": md5(folder / "batches.meta")})
    n_train = sum(per_batch)
    return {"train": (torch.from_numpy(images[:n_train]), torch.from_numpy(labels[:n_train])),
            "test": (torch.from_numpy(images[n_train:]), torch.from_numpy(labels[n_train:]))}


def test_cifar10_from_torchvisions_files(tmp_path, monkeypatch):
    """CIFAR-10 as torchvision stores it: NHWC arrays become NCHW uint8, labels and class names kept,
    both splits normalised with the train split's statistics; nothing is downloaded."""
    expected = _fake_cifar10(tmp_path, monkeypatch)
    channel_means = lambda x: (x.double() / 255).mean((0, 2, 3))  # noqa: E731
    train_means = channel_means(expected["train"][0])
    assert (channel_means(expected["test"][0]) - train_means).abs().max() > 1e-2  # the splits differ
    for split in ("train", "test"):
        data = load("cifar10", split, root=tmp_path, download=False)
        images, labels = expected[split]
        assert data.images.dtype == torch.uint8 and data.images.shape == (len(labels), 3, 32, 32)
        assert torch.equal(data.images, images)
        assert data.labels.dtype == torch.int64 and torch.equal(data.labels, labels)
        assert data.classes == CIFAR_NAMES
        assert data.mean == pytest.approx(train_means.tolist(), abs=1e-6)
        assert (tmp_path / "tensors" / f"cifar10-{split}.pt").exists()


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


def test_holdout_is_stratified_and_disjoint():
    from vitcourse.data import holdout
    data = synthetic("train", n=1000)
    rest, val = holdout(data, 200, seed=4)
    assert (len(rest), len(val)) == (800, 200)
    assert torch.bincount(val.labels).tolist() == [20] * 10 and torch.bincount(rest.labels).tolist() == [80] * 10
    as_rows = lambda d: {tuple(x.flatten().tolist()) for x in d.images}  # noqa: E731
    assert not as_rows(rest) & as_rows(val) and as_rows(rest) | as_rows(val) == as_rows(data)
    assert as_rows(val) == as_rows(subset(data, 200, seed=4))        # the held-out part is subset()'s draw
    with pytest.raises(ValueError, match="leaves none"):
        holdout(data, 1.0)


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
