"""Item 6: two seeds of chapter 03's cpu recipe trained one after the other on all threads, against
side by side (``vitcourse.beside.train_beside``: the second seed in another process on half the
threads, the first in this one on the rest), as chapter 03 trains them for C3c. Wall time of both
runs, process start-up included; the data are Fashion-MNIST-shaped random uint8 images (nothing is
downloaded; the pixel values do not change the work). CPU only: on a GPU nothing runs side by side.
"""
from __future__ import annotations

import tempfile
import time

import torch

from vitcourse.beside import train_beside
from vitcourse.recipes import recipe, train_recipe

from .loader import random_images
from .common import header, interleaved, median, report, spread, table


def _nothing(r, data) -> None:
    """A second process that only starts: spawn, imports, the recipe and the data received."""
    import vitcourse.recipes  # noqa: F401  (what the real worker imports first)


def start_up_seconds(r, data) -> float:
    """Seconds to start a process as train_beside does and see it end, having done no work."""
    t0 = time.perf_counter()
    process = torch.multiprocessing.get_context("spawn").Process(target=_nothing, args=(r, data), daemon=True)
    process.start()
    process.join()
    return time.perf_counter() - t0


def run(repeats: int = 3, save: bool = True, quick: bool = False, images: int = 12_800) -> list[dict]:
    r = recipe("vit", "cpu").replace(epochs=1)
    data = random_images(1_280 if quick else images, (1, 28, 28), "fashion-shaped random")
    threads = torch.get_num_threads()
    if threads < 2:
        report(f"### 6. Seeds side by side: skipped ({threads} thread; side by side needs two or more)\n", save)
        return []

    def one_after_the_other():
        with tempfile.TemporaryDirectory() as root:
            for seed in (0, 1):
                train_recipe(r, data, name="bench", seed=seed, root=root, progress=False, device="cpu")

    def side_by_side():
        with tempfile.TemporaryDirectory() as root:
            with train_beside(r, data, name="bench", seeds=(1,), device="cpu", root=root) as other:
                assert other.process is not None, "train_beside started no process"
                train_recipe(r, data, name="bench", seed=0, root=root, progress=False, device="cpu")
            other.wait(progress=False)

    times = interleaved({"one after the other": one_after_the_other, "side by side": side_by_side},
                        repeats, torch.device("cpu"), warmup=0)
    start_up = median([start_up_seconds(r, data) for _ in range(repeats)])
    work = 2 * len(data) * r.epochs
    ips = {k: work / median(v) for k, v in times.items()}
    ratio = ips["side by side"] / ips["one after the other"]
    rows = [[f"one after the other, {threads} threads each", f"{median(times['one after the other']):.1f} "
             f"({spread(times['one after the other'])})", f"{ips['one after the other']:.0f}", "1.00x"],
            [f"side by side, {threads - threads // 2} + {threads // 2} thread(s)",
             f"{median(times['side by side']):.1f} ({spread(times['side by side'])})", f"{ips['side by side']:.0f}",
             f"{ratio:.2f}x"],
            ["side by side, less the second process's start-up (measured alone: "
             f"{start_up:.1f} s, paid once per call)", f"{median(times['side by side']) - start_up:.1f}",
             f"{work / (median(times['side by side']) - start_up):.0f}",
             f"{work / (median(times['side by side']) - start_up) / ips['one after the other']:.2f}x"]]
    text = (f"### 6. Two seeds of chapter 03's cpu ViT ({r.model}, batch {r.batch_size}, {len(data):,} images, one "
            f"epoch each), median of {repeats} interleaved repeats\n\n"
            + table(["how", "seconds for both", "images/s", "vs one after the other"], rows))
    report(text + "\n", save)
    return [dict(sequential_s=median(times["one after the other"]), beside_s=median(times["side by side"]),
                 ratio=ratio, start_up_s=start_up)]


if __name__ == "__main__":
    print(header("beside"))
    run(repeats=1, save=False, quick=True)
