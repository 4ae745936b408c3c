"""Item 3: batches per second of ``DeviceLoader`` (batched on-device crop + flip + normalise) against a
``torch.utils.data.DataLoader`` applying the same augmentation per sample with
``torchvision.transforms.v2`` in 2 worker processes. Data: CIFAR-shaped random uint8 images
(50000 x 3 x 32 x 32), so nothing is downloaded; the pixel values do not change the work.
"""
from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, Dataset

from vitcourse import runtime
from vitcourse.data import DeviceLoader, ImageData

from .common import header, interleaved, median, report, spread, table

BATCH, PADDING, WORKERS = 256, 4, 2


def random_images(n: int, shape=(3, 32, 32), name: str = "cifar-shaped random") -> ImageData:
    """``n`` random uint8 images of ``shape`` with 10 classes: the work of a real set, nothing downloaded."""
    g = torch.Generator().manual_seed(0)
    c = shape[0]
    return ImageData(images=torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g),
                     labels=torch.randint(0, 10, (n,), generator=g), classes=[str(k) for k in range(10)],
                     mean=(0.45,) * c, std=(0.25,) * c, name=name)


def cifar_shaped(n: int = 50_000) -> ImageData:
    return random_images(n)


class PerSample(Dataset):
    """The classic pipeline: one image at a time through a torchvision.transforms.v2 Compose."""

    def __init__(self, data: ImageData):
        from torchvision.transforms import v2
        self.data = data
        self.transform = v2.Compose([
            v2.RandomCrop(32, padding=PADDING), v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.mean, data.std)])

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.transform(self.data.images[i]), self.data.labels[i]


def run(repeats: int = 5, save: bool = True, quick: bool = False, batches: int = 40) -> list[dict]:
    dev = runtime.device()
    data = cifar_shaped(5_000 if quick else 50_000)
    batches = 5 if quick else batches
    device_loader = DeviceLoader(data, BATCH, crop_padding=PADDING, flip=True, device=dev)
    data_loader = DataLoader(PerSample(data), BATCH, shuffle=True, num_workers=WORKERS,
                             pin_memory=dev.type == "cuda", drop_last=True)

    def timed_batches(loader, warm: bool):
        """A fresh epoch; for the DataLoader the first batch (worker start-up) is taken untimed,
        so only its steady-state throughput is compared, which favours the DataLoader."""
        def one_repeat():
            it = iter(loader)
            if warm:
                next(it)
            for x, y in itertools.islice(it, batches):
                x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            del it  # shut the workers down, so they do not prefetch while the other side is timed
        return one_repeat

    times = interleaved({"DeviceLoader": timed_batches(device_loader, warm=False),
                         "DataLoader": timed_batches(data_loader, warm=True)}, repeats, dev, warmup=1)
    bps = {k: batches / median(v) for k, v in times.items()}
    ratio = bps["DeviceLoader"] / bps["DataLoader"]
    rows = [["DeviceLoader (batched, on the device)", f"{bps['DeviceLoader']:.1f} ({spread(times['DeviceLoader'])})",
             f"{bps['DeviceLoader'] * BATCH:.0f}", f"{ratio:.1f}x"],
            [f"DataLoader + transforms.v2 per sample, {WORKERS} workers",
             f"{bps['DataLoader']:.1f} ({spread(times['DataLoader'])})", f"{bps['DataLoader'] * BATCH:.0f}", "1.0x"]]
    text = (f"### 3. Data pipeline: random crop (padding {PADDING}) + flip + normalise, batch {BATCH}, "
            f"{len(data):,} CIFAR-shaped uint8 images, {batches} batches per repeat, median of {repeats} "
            "interleaved repeats\n\n"
            + table(["loader", "batches/s", "images/s", "vs DataLoader"], rows))
    report(text + "\n", save)
    return [dict(device_loader_bps=bps["DeviceLoader"], dataloader_bps=bps["DataLoader"], ratio=ratio)]


if __name__ == "__main__":
    print(header("loader"))
    run(repeats=3, save=False, quick=True)
