"""Saves inside an epoch: a run of one long epoch cut off anywhere resumes to exactly the weights of an
uninterrupted one (the study runs of chapters 04-07 are single FixedSteps epochs)."""
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from vitcourse import train as train_module
from vitcourse.checkpoint import read_checkpoint
from vitcourse.data import DeviceLoader, FixedSteps, synthetic
from vitcourse.models import create_model
from vitcourse.train import fit

ROOT = Path(__file__).resolve().parents[1]


def _data():
    return synthetic("train", n=96, image_size=32, seed=3)


def _loader(data, kind):
    if kind == "device":  # every augmentation the loader has, each drawing from its own generator
        return DeviceLoader(data, 16, crop_padding=2, flip=True, randaugment=True, mixup_alpha=0.4, seed=7,
                            device="cpu")
    if kind == "fixed":  # a study run: one epoch of 15 steps, going round the 6 batches of the data
        return FixedSteps(DeviceLoader(data, 16, crop_padding=2, flip=True, seed=7, device="cpu"), 15)
    if kind == "plain":  # a loader that cannot say where it stands: fit regenerates and skips
        loader = DeviceLoader(data, 16, flip=True, seed=7, device="cpu")
        return _Opaque(loader)
    raise ValueError(kind)


class _Opaque:
    """A loader with set_epoch and len but no state_dict (like a user's own loader)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        self.loader.set_epoch(epoch)

    def __iter__(self):
        return iter(self.loader)


def _model():
    torch.manual_seed(0)  # drop path draws from the global RNG, which the checkpoint must restore
    return create_model("vit_smoke_patch8_32", num_classes=10, drop_path=0.2)


class Disconnect(Exception):
    pass


@pytest.mark.parametrize("kind,epochs,cut", [("device", 2, 3), ("fixed", 1, 9), ("plain", 2, 8)])
def test_resume_from_a_save_inside_an_epoch_is_exact(tmp_path, monkeypatch, kind, epochs, cut):
    kw = dict(epochs=epochs, lr=2e-3, warmup_epochs=0.5, progress=False, device="cpu")
    data = _data()
    straight = _model()
    h_straight = fit(straight, _loader(data, kind), **kw)

    ckpt = tmp_path / "checkpoint.pt"
    saves = itertools.count(1)
    real_save = train_module.save_checkpoint

    def save_then_disconnect(*args, **kwargs):
        real_save(*args, **kwargs)
        if next(saves) == cut:  # the runtime goes away right after this save
            raise Disconnect

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_disconnect)
    with pytest.raises(Disconnect):
        fit(_model(), _loader(data, kind), checkpoint=ckpt, checkpoint_minutes=0, **kw)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    state = read_checkpoint(ckpt)
    assert state.get("position") is not None and 0 < state["position"]["step"], "the cut was not inside an epoch"

    torch.manual_seed(99)  # a new process: other RNG state, other initial weights
    resumed = create_model("vit_smoke_patch8_32", num_classes=10, drop_path=0.2)
    h_resumed = fit(resumed, _loader(data, kind), checkpoint=ckpt, checkpoint_minutes=0, **kw)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resuming from step {state['position']['step']}"
    for key in ("train_loss", "train_acc", "lr"):  # the epoch's record is the uninterrupted one's
        assert h_resumed[key] == h_straight[key], key


def test_no_save_inside_an_epoch_when_turned_off(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(train_module, "save_checkpoint", lambda *a, **k: saved.append(k.get("position")))
    fit(_model(), _loader(_data(), "device"), epochs=2, progress=False, device="cpu",
        checkpoint=tmp_path / "c.pt", checkpoint_minutes=None)
    assert saved == [None, None]  # the two epoch ends only


def test_minutes_between_saves_are_honoured(tmp_path, monkeypatch):
    """With 5 minutes between saves and a clock that advances 2 minutes per step, every third step saves."""
    clock = itertools.count(0, 120.0)
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(clock)))
    steps = []
    monkeypatch.setattr(train_module, "save_checkpoint", lambda *a, **k: steps.append((k.get("position") or {}).get("step")))
    fit(_model(), _loader(_data(), "fixed"), epochs=1, progress=False, device="cpu",
        checkpoint=tmp_path / "c.pt", checkpoint_minutes=5)
    inside = [s for s in steps if s is not None]
    assert inside and all(b - a >= 2 for a, b in zip(inside, inside[1:])), steps
    assert steps[-1] is None  # and the epoch's end


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from vitcourse import train as T
    from vitcourse.data import DeviceLoader, FixedSteps, synthetic
    from vitcourse.models import create_model
    ckpt, kill_after, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    real, count = T.save_checkpoint, [0]
    def save(*a, **k):
        real(*a, **k)
        count[0] += 1
        if count[0] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no exception handler: a reset VM
    T.save_checkpoint = save
    torch.manual_seed(0)
    model = create_model("vit_smoke_patch8_32", num_classes=10, drop_path=0.2)
    data = synthetic("train", n=96, image_size=32, seed=3)
    loader = FixedSteps(DeviceLoader(data, 16, crop_padding=2, flip=True, randaugment=True, seed=7,
                                     device="cpu"), 12)
    T.fit(model, loader, epochs=1, lr=2e-3, warmup_epochs=0.2, progress=False, device="cpu",
          checkpoint=ckpt if ckpt != "-" else None, checkpoint_minutes=0)
    torch.save(model.state_dict(), out)
""")


def test_sigkill_after_a_save_inside_the_epoch_then_rerun_is_bit_exact(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VITCOURSE_PROFILE": "smoke"}

    def run(*args):
        return subprocess.run([sys.executable, str(script), *map(str, args)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)

    straight = run("-", 0, tmp_path / "straight.pt")
    assert straight.returncode == 0, straight.stderr
    ckpt = tmp_path / "run" / "checkpoint.pt"
    killed = run(ckpt, 5, tmp_path / "never.pt")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    assert read_checkpoint(ckpt)["position"]["step"] == 5
    again = run(ckpt, 0, tmp_path / "resumed.pt")
    assert again.returncode == 0, again.stderr
    a = torch.load(tmp_path / "straight.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after the kill and the re-run"
