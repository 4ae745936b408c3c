"""The gpu profile's cost, planned from a rehearsal (``make rehearsal``): hours and memory per chapter.

A rehearsal (``vitcourse.rehearsal``) writes one JSON line per training run: the optimiser steps the
gpu profile will take, the FLOPs of one step and the memory it needs. ``gather`` adds them up per
chapter and turns FLOPs into hours with an *effective* throughput per GPU: the dense 16-bit tensor
peak of its datasheet times the share of it that models this small reach (their matrices are a few
hundred wide; they leave most of a big GPU idle). Those shares are assumptions, stated in ``GPUS``,
until ``make gpu-check`` measures the course's models on a real GPU.

    python -m vitcourse.plan build/rehearsal/plan build/gpu-plan.json build/gpu-plan.md [benchmarks/gpu-throughput.json]
"""
from __future__ import annotations

import json
from pathlib import Path

from ._io import atomic_write_json, atomic_write_text

GIB = 2**30
# Dense fp16/bf16 tensor-core peaks (datasheets) and the share of it assumed for the course's models.
GPUS = {
    "T4": {"peak_flops": 65e12, "utilisation": 0.20, "memory_gib": 15.0,
           "source": "NVIDIA T4 datasheet: 65 TFLOP/s fp16 tensor; 20% assumed for models of width 192-384"},
    "L4": {"peak_flops": 121e12, "utilisation": 0.20, "memory_gib": 22.5,
           "source": "NVIDIA L4 datasheet: 121 TFLOP/s bf16 dense; 20% assumed"},
    "A100": {"peak_flops": 312e12, "utilisation": 0.15, "memory_gib": 40.0,
             "source": "NVIDIA A100 datasheet: 312 TFLOP/s bf16 dense; 15% assumed (small matrices)"},
    "H100": {"peak_flops": 989e12, "utilisation": 0.10, "memory_gib": 80.0,
             "source": "NVIDIA H100 SXM datasheet: 989 TFLOP/s bf16 dense; 10% assumed (small matrices)"},
}
BUDGET = {"chapter_hours_T4": 1.0, "chapter_peak_memory_gib": 12.0, "course_hours_T4": 6.0}
SHIPPED = Path(__file__).with_name("gpu_plan.json")


def run_flops(run: dict) -> float:
    """A run's training FLOPs: its steps times the FLOPs of one, plus its evaluations' forward passes."""
    return run["steps"] * run["flops_per_step"] + run.get("eval_flops", 0.0)


def effective_flops(measured: dict | None = None) -> dict[str, tuple[float, str]]:
    """Per GPU, the FLOP/s a course model trains at and where that number comes from: the assumption
    in ``GPUS``, or, after ``make gpu-check`` wrote ``measured`` (benchmarks/gpu-throughput.json), the
    median achieved rate of the gpu-profile models on that GPU, scaled to the others by the ratio of
    their datasheet peaks (the same share of each GPU's peak)."""
    out = {gpu: (g["peak_flops"] * g["utilisation"], g["source"]) for gpu, g in GPUS.items()}
    if measured and measured.get("plan_gpu") in GPUS:
        base, rate = measured["plan_gpu"], measured["effective_flops"]
        for gpu, g in GPUS.items():
            ratio = g["peak_flops"] / GPUS[base]["peak_flops"]
            out[gpu] = (rate * ratio, f"measured on {measured['gpu']} {measured['date']} "
                                      f"({rate / 1e12:.1f} TFLOP/s)" + ("" if gpu == base else f" x {ratio:.3g}, the "
                                                                         f"ratio of the {gpu}'s peak to the {base}'s"))
    return out


def hours(flops: float, rates: dict | None = None) -> dict:
    rates = rates or effective_flops()
    return {gpu: flops / rate / 3600 for gpu, (rate, _) in rates.items()}


def chapter_plan(runs: list[dict], rates: dict | None = None) -> dict:
    flops = sum(run_flops(r) for r in runs)
    peak = max((r["peak_memory_bytes"] for r in runs), default=0) / GIB
    return {"runs": len(runs), "steps": sum(r["steps"] for r in runs), "train_flops": flops,
            "hours": hours(flops, rates), "peak_memory_gib": peak,
            "largest_run": max(runs, key=run_flops, default={}).get("model")}


def gather(folder, measured: dict | None = None) -> dict:
    """Every chapter's plan from the rehearsal's ``NN_name.jsonl`` files in ``folder``; ``measured``:
    what ``make gpu-check`` wrote (``benchmarks/gpu-throughput.json``), if a GPU was ever measured."""
    rates = effective_flops(measured)
    chapters = {}
    for path in sorted(Path(folder).glob("*.jsonl")):
        runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        chapters[path.stem] = chapter_plan(runs, rates)
    total = sum(c["train_flops"] for c in chapters.values())
    over = [name for name, c in chapters.items()
            if c["hours"]["T4"] > BUDGET["chapter_hours_T4"] or c["peak_memory_gib"] > BUDGET["chapter_peak_memory_gib"]]
    over_course = hours(total, rates)["T4"]
    return {"chapters": chapters, "course": {"train_flops": total, "hours": hours(total, rates)},
            "throughput": {gpu: {"flops": rate, "source": source} for gpu, (rate, source) in rates.items()},
            "budget": BUDGET, "over_budget": over + (["course"] if over_course > BUDGET["course_hours_T4"] else [])}


def markdown(plan: dict) -> str:
    gpus = list(GPUS)
    lines = ["| chapter | runs | steps | PFLOP | " + " | ".join(f"hours {g}" for g in gpus) + " | peak GiB |",
             "|---|---:|---:|---:|" + "---:|" * len(gpus) + "---:|"]
    for name, c in plan["chapters"].items():
        lines.append(f"| {name} | {c['runs']} | {c['steps']:,} | {c['train_flops'] / 1e15:.1f} | "
                     + " | ".join(f"{c['hours'][g]:.2f}" for g in gpus) + f" | {c['peak_memory_gib']:.1f} |")
    course = plan["course"]
    lines.append(f"| **course** | | | {course['train_flops'] / 1e15:.1f} | "
                 + " | ".join(f"{course['hours'][g]:.2f}" for g in gpus) + " | |")
    notes = [f"- {g}: {t['flops'] / 1e12:.1f} TFLOP/s, {t['source']}." for g, t in plan["throughput"].items()]
    budget = (f"Budgets: a chapter at most {BUDGET['chapter_hours_T4']:g} h on a T4 and "
              f"{BUDGET['chapter_peak_memory_gib']:g} GiB, the course at most {BUDGET['course_hours_T4']:g} h. "
              + (f"Over budget: {', '.join(plan['over_budget'])}." if plan["over_budget"] else "All within."))
    counted = ("Counted: every `fit` run's optimiser steps (the full budget: a run that stops early, such as "
               "chapter 02's race at its target, takes less) and its evaluations' forward passes. Not counted: "
               "augmentation on the device, the notebooks' own loops and analyses, Python overheads; peak "
               "memory leaves out the framework's workspace (cuDNN, the allocator's cache).")
    return "\n".join(["# The gpu profile, planned by `make rehearsal`", "", *lines, "", budget, "", counted, "",
                      "Effective throughput (hours = FLOPs / effective FLOP/s):", *notes, ""])


def projected(chapter: str, plan: dict | None = None) -> str:
    """A line for a notebook's first cell: the chapter's gpu-profile time on a T4 and on the GPU here."""
    import torch
    if plan is None:
        if not SHIPPED.exists():
            return "no gpu plan ships with this copy of the package (make rehearsal writes one)"
        plan = json.loads(SHIPPED.read_text())
    c = plan["chapters"].get(chapter)
    if c is None:
        return f"{chapter} is not in the shipped gpu plan (run make rehearsal)"
    def minutes(h):
        return "under a minute" if h * 60 < 1 else f"about {h * 60:.0f} min"
    line = f"gpu profile of {chapter}: {minutes(c['hours']['T4'])} on a T4"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        known = next((g for g in GPUS if g in name), None)
        line += f", {minutes(c['hours'][known])} on this {known}" if known else f" (this GPU: {name}, not planned)"
    return line + f"; peak memory {c['peak_memory_gib']:.1f} GiB (planned by make rehearsal)"


if __name__ == "__main__":  # python -m vitcourse.plan FOLDER OUT.json OUT.md
    import sys
    folder, out_json, out_md = sys.argv[1:4]
    measured = Path(sys.argv[4]) if len(sys.argv) > 4 else None  # benchmarks/gpu-throughput.json
    plan = gather(folder, json.loads(measured.read_text()) if measured and measured.exists() else None)
    atomic_write_json(plan, out_json)
    atomic_write_text(markdown(plan), out_md)
    print(markdown(plan))
