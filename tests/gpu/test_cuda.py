"""The CUDA tests of `make gpu-check` (not part of `make test`: CI has no GPU). Each needs a CUDA device;
on a CPU they are skipped with that reason, and `make gpu-check` says so."""
import itertools

import pytest
import torch

from vitcourse import train as train_module
from vitcourse.data import DeviceLoader, FixedSteps, synthetic
from vitcourse.models import create_model
from vitcourse.runtime import precision_for
from vitcourse.train import evaluate, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU: run make gpu-check on a machine with one")
DEV = torch.device("cuda")


def _data(n=512):
    return synthetic("train", n=n, image_size=32), synthetic("test", n=256, image_size=32)


def _fit(epochs=3, **kw):
    train, test = _data()
    torch.manual_seed(0)
    model = create_model("vit_smoke_patch8_32", num_classes=10)
    loader = DeviceLoader(train, 64, crop_padding=2, flip=True, seed=0, device=DEV)
    history = fit(model, loader, epochs=epochs, lr=2e-3, warmup_epochs=0.5, progress=False, device=DEV, **kw)
    return model, history, evaluate(model, DeviceLoader(test, 128, shuffle=False, device=DEV))


def test_the_policy_autocasts_matrix_products_to_the_gpus_precision():
    p = precision_for(DEV)
    major, _ = torch.cuda.get_device_capability()
    assert p.name == ("bf16" if major >= 8 else "fp16") and p.use_scaler == (major < 8)
    with p.autocast("cuda"):
        y = torch.randn(8, 8, device=DEV) @ torch.randn(8, 8, device=DEV)
    assert y.dtype == p.dtype


@pytest.mark.parametrize("precision", ["policy", "fp16"])
def test_fit_learns_in_the_gpus_precision_and_in_fp16_with_the_scaler(monkeypatch, precision):
    if precision == "fp16":
        monkeypatch.setenv("VITCOURSE_PRECISION", "fp16")
        assert precision_for(DEV).use_scaler
    _, history, test = _fit()
    losses = history["train_loss"]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert test["acc"] > 0.2  # ten classes: well above chance after three epochs


def test_compile_on_and_off_train_alike():
    _, plain, _ = _fit(epochs=1)
    _, compiled, _ = _fit(epochs=1, compile=True)
    a, b = plain.last["train_loss"], compiled.last["train_loss"]
    assert abs(a - b) <= 0.05 * abs(a), (a, b)


def test_the_loader_augments_on_the_gpu_and_repeats_with_its_seed():
    train, _ = _data(256)
    kw = dict(crop_padding=4, flip=True, randaugment=True, mixup_alpha=0.4, seed=3, device=DEV)
    a, b = (list(itertools.islice(DeviceLoader(train, 64, **kw), 2)) for _ in range(2))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.device.type == "cuda" and xa.shape == (64, 3, 32, 32) and ya.shape == (64, 10)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x, _ = next(iter(DeviceLoader(train, 64, crop_scale=(0.35, 1.0), crop_size=24, seed=3, device=DEV)))
    assert x.shape == (64, 3, 24, 24) and x.device.type == "cuda"


def test_resume_inside_an_epoch_on_cuda(tmp_path, monkeypatch):
    """How close to bit-exact a resumed CUDA run ends (atomics in some backward kernels may differ)."""
    train, _ = _data()
    kw = dict(epochs=1, lr=2e-3, warmup_epochs=0.2, progress=False, device=DEV)
    loader = lambda: FixedSteps(DeviceLoader(train, 64, crop_padding=2, flip=True, seed=1, device=DEV), 12)  # noqa: E731

    def model():
        torch.manual_seed(0)
        return create_model("vit_smoke_patch8_32", num_classes=10, drop_path=0.1)

    straight = model()
    fit(straight, loader(), **kw)
    saves, real = itertools.count(1), train_module.save_checkpoint

    class Cut(Exception):
        pass

    def cut(*a, **k):
        real(*a, **k)
        if next(saves) == 5:
            raise Cut

    monkeypatch.setattr(train_module, "save_checkpoint", cut)
    with pytest.raises(Cut):
        fit(model(), loader(), checkpoint=tmp_path / "c.pt", checkpoint_minutes=0, **kw)
    monkeypatch.setattr(train_module, "save_checkpoint", real)
    resumed = model()
    fit(resumed, loader(), checkpoint=tmp_path / "c.pt", checkpoint_minutes=0, **kw)
    diff = max((a - b).abs().max().item() for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))
    print(f"largest weight difference after a resume on CUDA: {diff:.3g}")
    assert diff <= 1e-4
