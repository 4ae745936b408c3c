import warnings

import pytest
import torch

import vitcourse
from vitcourse import runtime


def test_profile_default_and_explicit(monkeypatch):
    monkeypatch.delenv("VITCOURSE_PROFILE", raising=False)
    assert runtime.profile() == ("gpu" if torch.cuda.is_available() else "cpu")
    for p in ("smoke", "cpu", "gpu"):
        monkeypatch.setenv("VITCOURSE_PROFILE", p)
        assert runtime.profile() == p
        assert vitcourse.budget(smoke=1, cpu=2, gpu=3) == {"smoke": 1, "cpu": 2, "gpu": 3}[p]


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "laptop")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        runtime.profile()


def test_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.device().type == "cpu"


@pytest.mark.parametrize("capability,name,dtype,scaler", [
    ((7, 5), "fp16", torch.float16, True),    # T4
    ((7, 0), "fp16", torch.float16, True),    # V100
    ((8, 0), "bf16", torch.bfloat16, False),  # A100
    ((9, 0), "bf16", torch.bfloat16, False),  # H100
])
def test_precision_follows_compute_capability(monkeypatch, capability, name, dtype, scaler):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: capability)
    # A T4 reports bf16 support; the policy must not ask it.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    policy = runtime.precision_for(torch.device("cuda"))
    assert (policy.name, policy.dtype, policy.use_scaler) == (name, dtype, scaler)


def test_precision_on_cpu_is_fp32():
    policy = runtime.precision_for("cpu")
    assert policy.dtype is None and not policy.use_scaler
    with policy.autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_seed_everything_repeats():
    runtime.seed_everything(3)
    a = torch.rand(3)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_environment_report_lists_versions(monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    report = runtime.environment_report()
    for word in ("python", "torch", "torchvision", "device", "precision", "profile", "smoke"):
        assert word in report


def test_environment_report_warns_on_torchvision_mismatch(monkeypatch):
    import torchvision

    def broken(*args, **kwargs):
        raise RuntimeError("operator torchvision::nms does not exist")
    monkeypatch.setattr(torchvision.ops, "nms", broken)
    with pytest.warns(UserWarning, match="reinstall"):
        report = runtime.environment_report()
    assert "torchvision::nms" in report


def test_cpu_threads_default_and_override(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("VITCOURSE_CPU_THREADS", raising=False)
        assert vitcourse.device().type == "cpu" and torch.get_num_threads() == before  # torch's default
        monkeypatch.setenv("VITCOURSE_CPU_THREADS", "1")
        vitcourse.device()
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("VITCOURSE_CPU_THREADS", "two")
        with pytest.raises(ValueError, match="VITCOURSE_CPU_THREADS"):
            vitcourse.device()
    finally:
        torch.set_num_threads(before)


def test_evaluating_restores_the_mode_even_on_error():
    model = torch.nn.Dropout(0.5)
    with pytest.raises(RuntimeError):
        with vitcourse.evaluating(model):
            assert not model.training
            raise RuntimeError("boom")
    assert model.training
    model.eval()
    with vitcourse.evaluating(model):
        pass
    assert not model.training
