"""Item 4: wall-clock time and epochs for the course's ViT and ResNet to first reach 90% test accuracy
on Fashion-MNIST with ``vitcourse.train.fit``, using the cpu-profile settings of notebooks 03 (ViT)
and 00 (ResNet). Test accuracy is measured after every epoch; a run stops at the target, at the end
of its schedule, or after the epoch that takes it past its time budget (20 min by default; the
issue's target for the ViT is 10 min, read it off the table). Writes the curves to
benchmarks/time_to_accuracy-<runs>.png and the table to RESULTS.md.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from vitcourse import runtime
from vitcourse.data import DeviceLoader, load
from vitcourse.recipes import recipe
from vitcourse.train import fit

from .common import report, table

TARGET = 0.90
FIGURE = Path(__file__).with_name("time_to_accuracy-{}.png")  # formatted with the runs' keys


class Stop(Exception):
    """Raised from on_epoch_end to end a run early (fit has no other early exit)."""


def runs(train, c: int, h: int) -> dict:
    """key -> (label, model factory, fit keyword arguments, loader keyword arguments): the cpu-profile
    recipes of notebooks 03 (ViT) and 00 (ResNet), read from vitcourse.recipes."""
    out = {}
    for key in ("vit", "resnet"):
        r = recipe(key, "cpu")
        loader = dict(batch_size=r.batch_size, drop_last=key == "vit", **r.augment)
        out[key] = (f"{r.model} (notebook {'03' if key == 'vit' else '00'}, cpu recipe)",
                    lambda r=r: r.build(train), dict(epochs=r.epochs, **r.fit_args()), loader)
    return out


def run(save: bool = True, quick: bool = False, minutes: float = 20.0, models=("vit", "resnet")) -> list[dict]:
    dev = runtime.device()
    if quick:
        train, test = (load("synthetic", s, n=512 if s == "train" else 256, image_size=28, channels=1)
                       for s in ("train", "test"))
    else:
        train, test = load("fashion_mnist", "train", download=False), load("fashion_mnist", "test", download=False)
    c, h, _ = train.shape
    test_loader = DeviceLoader(test, 1000, shuffle=False, device=dev)
    rows, curves, results = [], {}, []
    table_of_runs = runs(train, c, h)
    for key in models:
        name, factory, fit_kw, loader_kw = table_of_runs[key]
        if quick:
            fit_kw = {**fit_kw, "epochs": 1}
        runtime.seed_everything(0)
        model = factory()
        loader_kw = dict(loader_kw)
        loader = DeviceLoader(train, loader_kw.pop("batch_size"), seed=0, device=dev, **loader_kw)
        curve, t0 = [(0.0, 0.0, 0.1)], time.perf_counter()  # (wall s, train s, test acc); chance at 0

        def on_epoch_end(epoch, history):
            train_s = sum(e["seconds"] for e in history.epochs)
            curve.append((time.perf_counter() - t0, train_s, history.last["test_acc"]))
            print(f"  {name}: epoch {epoch}, {curve[-1][0]:.0f} s, test accuracy {curve[-1][2]:.4f}", flush=True)
            if history.last["test_acc"] >= TARGET or curve[-1][0] > 60 * minutes:
                raise Stop

        try:
            history = fit(model, loader, test_loader, progress=False, device=dev, on_epoch_end=on_epoch_end,
                          val_name="test", **fit_kw)
        except Stop:
            pass
        reached = next((i for i, (_, _, acc) in enumerate(curve) if acc >= TARGET), None)
        best = max(acc for _, _, acc in curve)
        params = sum(p.numel() for p in model.parameters())
        rows.append([name, f"{params:,}", f"{len(curve) - 1}/{fit_kw['epochs']}",
                     " ".join(f"{acc:.3f}" for _, _, acc in curve[1:]), f"{best:.4f}",
                     f"{curve[reached][0]:.0f} s, epoch {reached}" if reached else "not reached",
                     f"{curve[-1][1] / (len(curve) - 1):.0f}"])
        curves[name] = curve
        results.append(dict(name=name, curve=curve, reached_epoch=reached, best=best,
                            seconds=curve[reached][0] if reached else None))
    text = (f"### 4. Time to {TARGET:.0%} test accuracy on {train.name} ({len(train):,} train / {len(test):,} test), "
            f"cpu-profile settings, budget {minutes:g} min per model\n\n"
            + table(["model", "params", "epochs run", "test acc per epoch", "best",
                     f"wall time to {TARGET:.0%} (incl. eval)", "train s/epoch"], rows))
    figure = Path(str(FIGURE).format("-".join(models)))
    _plot(curves, train.name, figure if save else None)
    text += f"\n\nCurves: {figure.name}"
    report(text + "\n", save)
    return results


def _plot(curves: dict, data_name: str, path: Path | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot([w / 60 for w, _, _ in curve], [a for _, _, a in curve], marker="o", label=name)
    ax.axhline(TARGET, color="gray", linestyle="--", label=f"target {TARGET:.0%}")
    ax.set(xlabel="wall-clock minutes (training + evaluation)", ylabel="test accuracy",
           title=f"time to accuracy on {data_name}, {torch.get_num_threads()} CPU threads", ylim=(0.5, 1.0))
    ax.legend()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    plt.close(fig)
