"""Where the course keeps its files, and ``setup()``, the first call of every notebook.

One folder holds every run, study record, checkpoint and saved claims table: ``runs_root()``.

- ``$VITCOURSE_RUNS`` when set;
- else, after ``setup()`` on Colab, ``MyDrive/vitcourse/runs`` on Google Drive: a Colab VM's disk is
  wiped on a runtime reset (an idle disconnect, the 12-hour limit), and each notebook gets a VM of
  its own, so only Drive lets chapter 05 find chapter 00's teacher and survive a reset;
- else ``runs/`` in the working directory (beside the notebooks, where Jupyter starts them).

Data sets are cached beside them on Drive (``MyDrive/vitcourse/data``), so CIFAR is downloaded once
for the whole course, not once per chapter and per reset.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DRIVE_MOUNT = Path("/content/drive")
_drive_folder: Path | None = None  # MyDrive/vitcourse once setup() has mounted Drive


def on_colab() -> bool:
    """True inside a Google Colab runtime (its ``google.colab`` module can be imported)."""
    try:
        return importlib.util.find_spec("google.colab") is not None
    except ModuleNotFoundError:  # no ``google`` package at all
        return False


def drive_folder() -> Path | None:
    """``MyDrive/vitcourse`` after ``setup()`` mounted Google Drive, else None."""
    return _drive_folder


def runs_root() -> Path:
    """The folder of every run: ``$VITCOURSE_RUNS``, else Drive after ``setup()`` on Colab, else ``runs``."""
    env = os.environ.get("VITCOURSE_RUNS", "").strip()
    if env:
        return Path(env).expanduser()
    if _drive_folder is not None:
        return _drive_folder / "runs"
    return Path("runs")


def _mount_drive() -> Path:
    """Mount Google Drive at /content/drive (Colab asks the learner once) and return MyDrive/vitcourse."""
    my_drive = DRIVE_MOUNT / "MyDrive"
    if not my_drive.is_dir():  # a second notebook cell, or a re-run, finds it mounted
        from google.colab import drive
        drive.mount(str(DRIVE_MOUNT))
    if not my_drive.is_dir():
        raise RuntimeError(f"Google Drive did not appear at {my_drive} after mounting. Run the cell again and "
                           "allow access, or set VITCOURSE_DRIVE=0 to keep runs on the VM's disk (a runtime "
                           "reset then deletes them).")
    folder = my_drive / "vitcourse"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def setup(drive: bool | None = None, verbose: bool = True) -> None:
    """The notebooks' first call. On Colab, mount Google Drive once and keep runs and the data cache
    under ``MyDrive/vitcourse`` (``drive=False`` or ``$VITCOURSE_DRIVE=0`` opts out); elsewhere mount
    nothing. Print where runs go and the environment report, and on a runtime without a GPU say how
    to get one. ``runs_root()`` then says where runs go."""
    global _drive_folder
    from .runtime import environment_report, profile
    import torch

    colab = on_colab()
    if drive is None:
        drive = os.environ.get("VITCOURSE_DRIVE", "1").strip().lower() not in ("0", "false", "no", "off")
    if colab and drive and not os.environ.get("VITCOURSE_RUNS", "").strip():
        _drive_folder = _mount_drive()
        os.environ.setdefault("VITCOURSE_DATA", str(_drive_folder / "data"))  # CIFAR once, for every chapter
    root = runs_root()
    if verbose:
        lines = [environment_report(), f"runs         {root.resolve()}"]
        if colab and _drive_folder is None:
            lines.append("             (the VM's disk: a runtime reset deletes these runs; VITCOURSE_DRIVE=1 "
                         "keeps them on Google Drive)")
        if colab and not torch.cuda.is_available():
            lines.append(f"\nThis Colab runtime has no GPU, so the {profile()} profile runs: Fashion-MNIST and "
                         "small models, minutes per chapter, results that are meaningful but smaller than the "
                         "gpu profile's. For the gpu profile: Runtime > Change runtime type > T4 GPU > Save, "
                         "then run the notebook again from the top.")
        print("\n".join(lines))
