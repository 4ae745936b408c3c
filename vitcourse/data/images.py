"""Image data sets as whole tensors: ``load(name, split)`` -> uint8 NCHW images + int64 labels.

Small vision data sets fit in memory (CIFAR-10 train is 150 MB as uint8), so the course keeps
each split as one tensor and moves it to the GPU once: no per-image Python work during training.
Converted tensors are cached as ``.pt`` files, so a second load takes a fraction of a second.
"""
from __future__ import annotations

import functools
import gzip
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .. import rehearsal
from .._names import unknown_name
from ..runtime import profile
from .._io import atomic_save

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test")


@dataclass
class ImageData:
    """One split of an image data set, held as tensors."""
    images: torch.Tensor          # uint8, (N, C, H, W)
    labels: torch.Tensor          # int64, (N,)
    classes: list[str]
    mean: tuple[float, ...]       # per channel, on the 0..1 scale (of the train split)
    std: tuple[float, ...]
    name: str = ""

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image."""
        return tuple(self.images.shape[1:])

    def __repr__(self) -> str:
        c, h, w = self.shape
        return f"ImageData({self.name!r}, {len(self)} images of {c}x{h}x{w}, {len(self.classes)} classes)"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where data sets and the tensor cache live: ``root``, ``$VITCOURSE_DATA`` (which ``setup()`` points
    at Google Drive on Colab), else ``~/.cache/vitcourse``."""
    return Path(root or os.environ.get("VITCOURSE_DATA") or Path.home() / ".cache" / "vitcourse")


def dataset_for_profile() -> str:
    """The image data set of the active profile: synthetic (smoke), fashion_mnist (cpu), cifar10 (gpu),
    unless ``$VITCOURSE_DATASET`` names another (e.g. fashion_mnist in the gpu profile on a machine
    that cannot download CIFAR)."""
    override = os.environ.get("VITCOURSE_DATASET", "").strip().lower()
    if override:
        if override not in LOADERS:
            raise ValueError(f"VITCOURSE_DATASET={override!r} is not a data set; known data sets: "
                             f"{', '.join(sorted(LOADERS))}. Fix the name, or unset it for the profile's default.")
        return override
    return {"smoke": "synthetic", "cpu": "fashion_mnist", "gpu": "cifar10"}[profile()]


def load(name: str, split: str = "train", *, root=None, download: bool = True, **synthetic_kwargs) -> ImageData:
    """Load ``split`` ("train" or "test") of ``name``: cifar10, cifar100, fashion_mnist or synthetic.

    Real sets are converted once and cached under ``data_root(root)/tensors``. ``synthetic`` is made
    in memory (see ``synthetic``; keyword arguments go to it) and never touches the disk.
    """
    if name not in LOADERS:
        raise KeyError(unknown_name("data set", name, LOADERS))
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
    if name == "synthetic":
        return synthetic(split, **synthetic_kwargs)
    if name in STAND_INS and rehearsal.active():
        return stand_in(name, split)
    root = data_root(root)
    cache = root / "tensors" / f"{name}-{split}.pt"
    if cache.exists():
        try:
            stored = torch.load(cache, weights_only=True)
            return ImageData(**stored)
        except Exception:
            cache.unlink()  # a half-written or stale cache is rebuilt, never trusted
    images, labels, classes = LOADERS[name](root, split, download)
    # Normalisation statistics always come from the train split.
    if split == "train":
        mean, std = _channel_stats(images)
    else:
        train = load(name, "train", root=root, download=download)
        mean, std = train.mean, train.std
    data = ImageData(images.contiguous(), labels.long(), classes, mean, std, name)
    atomic_save({"images": data.images, "labels": data.labels, "classes": classes,
                 "mean": mean, "std": std, "name": name}, cache)
    return data


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.float().div_(255).transpose(0, 1).flatten(1)  # (C, N*H*W)
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


# ---- Fashion-MNIST: read the IDX files from disk when they are anywhere we know --------------------
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_fashion_files(root: Path, split: str) -> tuple[Path, Path] | None:
    prefix = "train" if split == "train" else "t10k"
    for folder in (root, root / "fashion-mnist", root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        for ext in (".gz", ""):
            images = folder / f"{prefix}-images-idx3-ubyte{ext}"
            labels = folder / f"{prefix}-labels-idx1-ubyte{ext}"
            if images.exists() and labels.exists():
                return images, labels
    return None


def _fashion_mnist(root: Path, split: str, download: bool):
    found = _find_fashion_files(root, split)
    if found is None:
        _torchvision_download("FashionMNIST", root, split, download,
                              "or on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`")
        found = _find_fashion_files(root, split)
    images, labels = (_read_idx(p) for p in found)
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)), FASHION_CLASSES


# ---- CIFAR: torchvision downloads where there is a network ------------------------------------------
def _cifar(version: str):
    def loader(root: Path, split: str, download: bool):
        ds = _torchvision_download(version, root, split, download, "")
        images = torch.from_numpy(np.asarray(ds.data)).permute(0, 3, 1, 2)  # NHWC -> NCHW
        return images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes)
    return loader


def _torchvision_download(cls_name: str, root: Path, split: str, download: bool, extra_hint: str):
    import torchvision
    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(str(root), train=split == "train", download=False)
    except RuntimeError:
        if not download:
            raise FileNotFoundError(_missing(cls_name, root, extra_hint)) from None
    try:
        return cls(str(root), train=split == "train", download=True)
    except Exception as err:  # no network, a proxy, a truncated file...
        raise FileNotFoundError(_missing(cls_name, root, extra_hint) + f" (the download failed: {err})") from None


def _missing(cls_name: str, root: Path, extra_hint: str) -> str:
    hint = f"; {extra_hint}" if extra_hint else ""
    return (f"{cls_name} is not on disk under {root} and could not be downloaded. Fix: run once "
            f"with a network (`vitcourse.data.load(...)` downloads it), or copy the files there, or "
            f"set $VITCOURSE_DATA to a folder that has them{hint}.")


# ---- synthetic: a data set made in memory whose classes need spatial structure ------------------------
def synthetic(split: str = "train", *, n: int | None = None, image_size: int = 32, channels: int = 3,
              num_classes: int = 10, seed: int = 0) -> ImageData:
    """Oriented gratings: class k is a sinusoidal grating at angle k*180/num_classes degrees.

    Each image gets a random phase, a random colour, a random brightness and pixel noise, all drawn
    independently of the class, and the grating has zero mean over the image. So every per-channel
    statistic of an image is the same in distribution for all classes: telling classes apart needs
    the spatial arrangement of the pixels, as real images do. Deterministic for a (split, seed).
    """
    n = n if n is not None else (2000 if split == "train" else 500)
    g = torch.Generator().manual_seed(seed * 2 + (split == "test"))
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    angle = labels.float() * math.pi / num_classes
    # An integer number of periods across the image keeps the grating's mean at exactly zero.
    period = image_size / 4
    coords = torch.arange(image_size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(n, generator=g) * 2 * math.pi
    along = xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]
    grating = torch.sin(2 * math.pi * along / period + phase[:, None, None])          # (N, H, W)
    colour = 0.5 + 0.5 * torch.rand(n, channels, 1, 1, generator=g)                    # per image
    brightness = 128 + 30 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
    noise = 12 * torch.randn(n, channels, image_size, image_size, generator=g)
    images = brightness + 60 * colour * grating[:, None] + noise                        # within 0..255
    images = images.round().clamp(0, 255).to(torch.uint8)
    classes = [f"grating {round(k * 180 / num_classes)}°" for k in range(num_classes)]
    mean, std = _channel_stats(images)
    return ImageData(images, labels.long(), classes, mean, std, "synthetic")


# In a rehearsal (vitcourse.rehearsal) CIFAR is replaced by gratings of its shape, made in memory: the
# gpu profile's models, batches and class counts run without a download. (train size, test size, classes)
STAND_INS = {"cifar10": (50_000, 10_000, ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                          "horse", "ship", "truck"]),
             "cifar100": (50_000, 10_000, [f"class {k}" for k in range(100)])}


@functools.lru_cache(maxsize=4)  # made once per process: a chapter loads its splits more than once
def stand_in(name: str, split: str) -> ImageData:
    """A CIFAR-shaped stand-in for ``name`` (3x32x32 uint8, CIFAR's split sizes and class count), named
    like the real set so every run is configured as on Colab; its numbers are not evidence."""
    n_train, n_test, classes = STAND_INS[name]
    data = synthetic(split, n=n_train if split == "train" else n_test, image_size=32, channels=3,
                     num_classes=len(classes))
    if split == "test":  # normalised with the train split's statistics, as the real sets are
        data = replace(data, **_stand_in_train_stats(name))
    return replace(data, classes=list(classes), name=name)


def _stand_in_train_stats(name: str) -> dict:
    train = stand_in(name, "train")
    return {"mean": train.mean, "std": train.std}


LOADERS = {"fashion_mnist": _fashion_mnist, "cifar10": _cifar("CIFAR10"),
           "cifar100": _cifar("CIFAR100"), "synthetic": None}


def _apportion(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainders), at least 1 each."""
    exact = counts.double() * total / counts.sum()
    quota = exact.floor().long()
    short = total - int(quota.sum())
    quota[(exact - quota).argsort(descending=True)[:short]] += 1
    return quota.clamp(min=1).minimum(counts)


def _stratified(data: ImageData, fraction_or_count: float | int, seed: int) -> torch.Tensor:
    """The sorted indices of a stratified draw: the same share of every class, one seeded permutation per class."""
    n = len(data)
    if isinstance(fraction_or_count, float) and not 0.0 < fraction_or_count <= 1.0:
        raise ValueError(f"a fraction must be in (0, 1], got {fraction_or_count}")
    if isinstance(fraction_or_count, int) and not 0 < fraction_or_count <= n:
        raise ValueError(f"a count must be between 1 and {n} (the data set's size), got {fraction_or_count}")
    fraction = fraction_or_count if isinstance(fraction_or_count, float) else fraction_or_count / n
    counts = torch.bincount(data.labels, minlength=len(data.classes))
    quota = _apportion(counts, round(fraction * n))
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c, k in enumerate(quota.tolist()):
        idx = (data.labels == c).nonzero().squeeze(1)
        keep.append(idx[torch.randperm(len(idx), generator=g)][:k])
    return torch.cat(keep).sort().values


def subset(data: ImageData, fraction_or_count: float | int, seed: int = 0) -> ImageData:
    """A stratified subset: the same share of every class, e.g. ``subset(train, 0.1)`` or ``subset(train, 500)``.

    Subsets of growing size drawn with the same seed are nested (the 10% set contains the 5% set),
    which is what a data-scale study wants.
    """
    keep = _stratified(data, fraction_or_count, seed)
    return replace(data, images=data.images[keep], labels=data.labels[keep])


def holdout(data: ImageData, fraction_or_count: float | int, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Split ``data`` in two disjoint parts, ``(rest, held_out)``, the held-out part a stratified draw of
    ``fraction_or_count`` (as ``subset``): e.g. a validation split taken from the training split, so that a
    choice (a stopping step, a learning rate) is made without the test split. Mean and std stay those of
    ``data``."""
    keep = _stratified(data, fraction_or_count, seed)
    if len(keep) == len(data):
        raise ValueError(f"holding out {fraction_or_count} of {len(data)} images leaves none: hold out fewer")
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[keep] = False
    return (replace(data, images=data.images[rest], labels=data.labels[rest]),
            replace(data, images=data.images[keep], labels=data.labels[keep]))
