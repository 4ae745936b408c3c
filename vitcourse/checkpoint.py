"""Training checkpoints that survive a Colab disconnect and resume exactly.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the epoch, the history
and every random-number generator's state (Python, NumPy, torch CPU and CUDA). It is written
atomically and read with ``torch.load(weights_only=True)``, which unpickles tensors and plain
containers only, never arbitrary code, so NumPy's and Python's RNG states are stored as tensors/lists.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_save


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, saved from another model, or by another run."""


# ---- run fingerprints: a checkpoint knows which run wrote it --------------------------------------------
def _plain(obj):
    """A JSON-comparable copy: dataclasses as dicts, tuples as lists, anything else unknown as its str."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


def describe_model(model: torch.nn.Module) -> dict:
    """The model's class and configuration (its ``config`` attribute); a model without one is
    described by the names and shapes of its parameters and buffers."""
    config = getattr(model, "config", None)
    if config is None:
        shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
        config = {"architecture_sha1": hashlib.sha1(json.dumps(shapes).encode()).hexdigest()[:12]}
    return {"class": type(model).__name__, "config": _plain(config)}


def describe_loader(loader) -> dict | None:
    """What the loader says of its data and batching (``loader.describe()``), or None."""
    return _plain(loader.describe()) if hasattr(loader, "describe") else None


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_fingerprint(state: dict, fingerprint: dict, path="checkpoint") -> None:
    """Raise ``CheckpointError`` naming every field where the run that wrote ``state`` differs from
    the run about to resume it (old and new value), and the two ways out."""
    old = (state.get("extra") or {}).get("fingerprint")
    if old is None:
        raise CheckpointError(
            f"{path} was written without a run fingerprint (by an older vitcourse), so it cannot be told "
            "apart from another run's. Remove it to train this run from scratch, or pass a new path.")
    old, new = _flatten(old), _flatten(_plain(fingerprint))
    diffs = [f"{k}: {old.get(k, '(absent)')!r} in the checkpoint, {new.get(k, '(absent)')!r} now"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        folder = Path(path).parent
        raise CheckpointError(
            f"{path} belongs to a different run, so resuming it would bring back that run's results. "
            f"Differences: {'; '.join(diffs)}. Either give this run its own checkpoint path (e.g. "
            f"vitcourse.study.run_dir(name, config), one folder per config), or remove the old run "
            f"(`rm -r {folder}`) to replace it.")


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
                    history: list | None = None, extra: dict | None = None, position: dict | None = None) -> Path:
    """Write everything needed to resume after ``epoch`` finished epochs, atomically; ``position``
    says where a save inside the next epoch stands (its step, running sums and the loader's state)."""
    state = {
        "model": model.state_dict(),
        "model_class": type(model).__name__,
        "epoch": epoch,
        "history": history or [],
        "rng": rng_state(),
        "extra": extra or {},
    }
    if position is not None:
        state["position"] = position
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


def check_optimizer(optimizer: torch.optim.Optimizer, saved: dict, path="checkpoint") -> None:
    """Raise ``CheckpointError`` when a saved optimizer state does not fit ``optimizer``: other
    parameter groups, or per-parameter state (e.g. Adam's moments) of other shapes."""
    groups, saved_groups = optimizer.param_groups, saved.get("param_groups", [])
    sizes, saved_sizes = [len(g["params"]) for g in groups], [len(g["params"]) for g in saved_groups]
    if sizes != saved_sizes:
        raise CheckpointError(f"{path} holds an optimizer state for parameter groups of sizes {saved_sizes}, "
                              f"this optimizer has {sizes}. Use a new checkpoint path for this setup.")
    params = [p for g in groups for p in g["params"]]
    ids = [i for g in saved_groups for i in g["params"]]
    for p, i in zip(params, ids):
        for key, value in saved.get("state", {}).get(i, {}).items():
            if torch.is_tensor(value) and value.ndim > 0 and value.shape != p.shape:
                raise CheckpointError(f"{path}: the optimizer's {key!r} has shape {tuple(value.shape)} for a "
                                      f"parameter of shape {tuple(p.shape)}. Use a new checkpoint path.")


def load_checkpoint(path, *, model, optimizer=None, scheduler=None, scaler=None, restore_rng: bool = True,
                    check=None) -> dict:
    """Restore the states saved by ``save_checkpoint`` into the given objects; returns the raw state.

    Everything is checked before anything is changed (the model's keys and shapes, the optimizer's
    groups and state shapes, and ``check(state)`` if given), so a bad file leaves every object untouched.
    """
    state = read_checkpoint(path)
    check_compatible(model, state["model"], path)
    if optimizer is not None and "optimizer" in state:
        check_optimizer(optimizer, state["optimizer"], path)
    if check is not None:
        check(state)
    model.load_state_dict(state["model"])
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and name in state:
            obj.load_state_dict(state[name])
    if restore_rng:
        set_rng_state(state["rng"])
    return state
