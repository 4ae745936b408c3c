"""Timing, the machine description and the RESULTS.md report shared by every benchmark."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from vitcourse import runtime

RESULTS = Path(__file__).with_name("RESULTS.md")


def sync(dev: torch.device) -> None:
    """Wait for the device: CUDA calls return before the work is done, so time only after this."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def interleaved(cases: dict[str, Callable[[], object]], repeats: int, dev: torch.device,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each case, the cases taking turns: A B, B A, A B, ...

    Taking turns (and alternating who goes first) spreads the other processes' load and any slow
    drift (turbo, caches, a neighbour's job) evenly over both sides, which back-to-back runs do not.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times = {name: [] for name in cases}
    names = list(cases)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            sync(dev)
            t0 = time.perf_counter()
            cases[name]()
            sync(dev)
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """Relative half-range of the repeats, to show how noisy a median is."""
    m = statistics.median(xs)
    return f"±{50 * (max(xs) - min(xs)) / m:.0f}%" if m > 0 else "-"


def machine() -> str:
    """The GPU name, or the CPU model from /proc/cpuinfo with the number of cores."""
    dev = runtime.device()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def load_average() -> str:
    """The 1, 5 and 15-minute load averages: how busy the machine was (other users' work too)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def header(title: str) -> str:
    dev = runtime.device()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"## {title} — {now}\n\n"
            f"- machine: {machine()} (device {dev.type})\n"
            f"- torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"precision {runtime.precision_for(dev).name}\n"
            f"- load average (1/5/15 min) at start: {load_average()}\n")


def table(columns: list[str], rows: list[list]) -> str:
    """A markdown table; floats get 3 significant digits."""
    def cell(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(text: str, save: bool) -> None:
    """Print ``text`` and, if ``save``, append it to benchmarks/RESULTS.md."""
    print(text, flush=True)
    if save:
        if not RESULTS.exists():
            RESULTS.write_text("# Benchmark results\n\nAppended by `make bench` and `make bench-accuracy` "
                               "(see benchmarks/__init__.py). Newest last.\n")
        with RESULTS.open("a") as f:
            f.write("\n" + text.rstrip() + "\n")
