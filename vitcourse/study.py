"""A study is a grid of runs. Each finished run is stored as JSON and reused when the notebook runs again.

    study = Study("data_scale")
    for fraction in (0.01, 0.1, 1.0):
        study.run({"model": "resnet20", "fraction": fraction}, train_one)   # train_one(config) -> dict
    print(study.table(["model", "fraction", "test_acc"]))

``train_one`` returns a dict with "metrics" (final numbers) and optionally "history". A Colab
disconnect in the middle of a grid loses at most the run in progress: the finished ones are on disk.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Callable

from ._io import atomic_write_json
from . import rehearsal
from .runtime import profile
from .workspace import runs_root


def profile_folder() -> str:
    """The profile's folder name: a rehearsal's runs (``gpu-rehearsal``) never stand in for real gpu runs."""
    return f"{profile()}-rehearsal" if rehearsal.active() else profile()


def run_key(config: dict) -> str:
    """A readable, stable file name for a config: its values plus a short hash of the whole."""
    canonical = json.dumps(config, sort_keys=True, default=str)
    slug = "-".join(f"{k}={v}" for k, v in sorted(config.items()))
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", slug)[:80]
    return f"{slug}-{hashlib.sha1(canonical.encode()).hexdigest()[:8]}"


def run_dir(name: str, config: dict, root=None) -> Path:
    """The folder of one run, from its config: ``root/name/<profile>/<run_key(config)>``, ``root``
    defaulting to ``runs_root()``, e.g. for ``fit(..., checkpoint=run_dir("03_vit", config) /
    "checkpoint.pt")``. Changing a knob in ``config`` gives a new folder beside the old one; the same
    config finds its run again."""
    return Path(root if root is not None else runs_root()) / name / profile_folder() / run_key(config)


def _read_record(path: Path) -> dict | None:
    """A stored record, or None (with a warning naming the file) when it cannot be read."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "config" not in record or "metrics" not in record:
            raise ValueError("not a study record (no config or metrics)")
        return record
    except (OSError, ValueError) as err:  # JSONDecodeError is a ValueError
        warnings.warn(f"skipping unreadable study record {path} ({type(err).__name__}: {err}); "
                      "Study.run trains that run again", stacklevel=3)
        return None


class Study:
    """Runs stored under ``root/name/<profile>/`` (a smoke run never stands in for a cpu or gpu one),
    ``root`` defaulting to ``runs_root()``."""

    def __init__(self, name: str, root=None):
        self.name = name
        self.folder = Path(root if root is not None else runs_root()) / name / profile_folder()
        self.asked: list[dict] = []  # the configs this object was asked to run, in order

    def path(self, config: dict) -> Path:
        """The record of ``config``'s run (JSON)."""
        return self.folder / f"{run_key(config)}.json"

    def checkpoint(self, config: dict) -> Path:
        """Where ``config``'s run keeps its training checkpoint, for ``fit(..., checkpoint=...)``: a run
        cut off by a disconnect resumes from it when the notebook runs again."""
        return self.folder / run_key(config) / "checkpoint.pt"

    def run(self, config: dict, fn: Callable[[dict], dict], keep_checkpoint: bool = True) -> dict:
        """The stored record for ``config`` if it finished before, else ``fn(config)`` stored.
        ``keep_checkpoint=False``: once the record is written, the run's checkpoint folder
        (``checkpoint(config).parent``) is deleted: a grid of large models would otherwise fill the disk
        (or a Google Drive) with weights nothing reads again; a cut-off run still resumes from it."""
        path = self.path(config)
        if config not in self.asked:
            self.asked.append(config)
        if path.exists():
            record = _read_record(path)  # unreadable: run it again (atomic writes make this rare)
            if record is not None and record["config"] == json.loads(json.dumps(config, default=str)):
                return record
        out = fn(config)
        if "metrics" not in out:
            raise ValueError(f"the run function must return a dict with 'metrics'; it returned keys {list(out)}")
        history = out.get("history")
        if hasattr(history, "to_dict"):
            history = history.to_dict()
        record = {"config": config, "metrics": out["metrics"], "history": history}
        atomic_write_json(record, path)
        if not keep_checkpoint:
            shutil.rmtree(self.checkpoint(config).parent, ignore_errors=True)
        return json.loads(json.dumps(record, default=str))

    def results(self, everything: bool = False) -> list[dict]:
        """The finished runs this object was asked for (the grid of the current notebook), in the
        order asked, config and metrics flattened into one dict each. ``everything=True``: every
        stored record of the study, including grids the notebook no longer asks for. An unreadable
        record is skipped with a warning that names the file."""
        paths = sorted(self.folder.glob("*.json")) if everything else [self.path(c) for c in self.asked]
        rows = []
        for path in paths:
            record = _read_record(path) if path.exists() else None
            if record is not None:
                rows.append({**record["config"], **record["metrics"], "_history": record.get("history")})
        return rows

    def table(self, columns: list[str], rows: list[dict] | None = None) -> str:
        """A markdown table of the given columns (numbers with 4 significant digits)."""
        rows = self.results() if rows is None else rows
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
        return "\n".join(lines)

    def plot(self, x: str, y: str, hue: str | None = None, ax=None, logx: bool = False):
        """``y`` against ``x``, one line per value of ``hue``."""
        import matplotlib.pyplot as plt
        ax = ax or plt.subplots(figsize=(6, 4))[1]
        groups: dict = {}
        for r in self.results():
            groups.setdefault(r.get(hue) if hue else y, []).append((r[x], r[y]))
        for label, points in groups.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=str(label))
        if logx:
            ax.set_xscale("log")
        ax.set(xlabel=x, ylabel=y, title=f"{self.name}: {y} against {x}")
        ax.legend(title=hue)
        return ax
