"""Training checkpoints that survive a Colab disconnect and resume exactly.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the epoch, the history
and every random-number generator's state (Python, NumPy, torch CPU and CUDA). It is written
atomically and read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only, never arbitrary code, so NumPy's and Python's RNG states are stored as tensors/lists.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_save


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, or saved from another model."""


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "python": [version, list(internal), gauss_next],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path, *, model, optimizer=None, scheduler=None, scaler=None, epoch: int = 0,
                    history: list | None = None, extra: dict | None = None) -> Path:
    """Write everything needed to resume after ``epoch`` finished epochs, atomically."""
    state = {
        "model": model.state_dict(),
        "model_class": type(model).__name__,
        "epoch": epoch,
        "history": history or [],
        "rng": rng_state(),
        "extra": extra or {},
    }
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None:
            state[name] = obj.state_dict()
    return atomic_save(state, path)


def read_checkpoint(path) -> dict:
    """Load a checkpoint file safely; a corrupt or foreign file is a clear ``CheckpointError``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated: {type(err).__name__}: "
            f"{str(err)[:200]}). Delete it to start the run over, or pass another path.") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a vitcourse checkpoint (no 'model' entry). "
                              "Pass a file written by vitcourse.train.fit or save_checkpoint.")
    return state


def check_compatible(model: torch.nn.Module, state_dict: dict, path="checkpoint") -> None:
    """Raise ``CheckpointError`` naming the differences when ``state_dict`` does not fit ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = [f"{label} {items[:3]}{' ...' if len(items) > 3 else ''}"
                 for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape mismatches", shapes)) if items]
        raise CheckpointError(
            f"{path} was saved from a different model ({'; '.join(parts)}). Build the same model "
            "(name and config) that wrote it, or use a new checkpoint path for this model.")


def load_checkpoint(path, *, model, optimizer=None, scheduler=None, scaler=None, restore_rng: bool = True) -> dict:
    """Restore the states saved by ``save_checkpoint`` into the given objects; returns the raw state.

    Everything is checked before anything is changed, so a bad file leaves the model untouched.
    """
    state = read_checkpoint(path)
    check_compatible(model, state["model"], path)
    model.load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and name in state:
            obj.load_state_dict(state[name])
    if restore_rng:
        set_rng_state(state["rng"])
    return state
