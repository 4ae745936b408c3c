"""``fit`` under torchrun: two processes (gloo, on the CPU) train as one process does, share their
checkpoints with one-process runs both ways, and resume exactly after a kill.

Each torchrun launch is bounded by a timeout; the scenarios live in tests/distributed_worker.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distributed_worker import GLOBAL_BATCH, interrupted, run
from vitcourse import distributed
from vitcourse.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "VITCOURSE_PROFILE": "smoke", "OMP_NUM_THREADS": "1",
       "CUDA_VISIBLE_DEVICES": ""}  # gloo on the CPU, also on a machine with GPUs
TOLERANCE = 1e-5


def torchrun(*args, nproc: int = 2, module: bool = False, timeout: int = 180) -> subprocess.CompletedProcess:
    target = ["-m", *args] if module else [str(WORKER), *map(str, args)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *target]
    return subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def without_key_bias(weights: dict) -> dict:
    """The weights less the key part of each attention's q|k|v bias. Its gradient is zero in exact
    arithmetic (softmax ignores a constant added to all of a query's scores, and q . b_k is one), so
    what it receives is rounding noise, which Adam divides by its own size into steps of up to ~lr:
    a different summation order moves it by ~1e-5 without changing what the model computes (the
    tests compare the logits too)."""
    out = dict(weights)
    for name, value in weights.items():
        if name.endswith("attn.qkv.bias"):
            q, _, v = value.chunk(3)
            out[name] = torch.cat([q, v])
    return out


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()  # plain keys on both sides (no "module." prefix from DDP)
    a, b = without_key_bias(a), without_key_bias(b)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def logits_difference(a: dict, b: dict) -> float:
    """How far apart the two sets of weights' logits are on the test's images."""
    from vitcourse.data import synthetic
    from vitcourse.models import create_model
    x = synthetic("test", n=40, image_size=32, seed=4).images.float() / 255
    outs = []
    for weights in (a, b):
        model = create_model("vit_smoke_patch8_32", num_classes=10)
        model.load_state_dict(weights)
        with torch.no_grad():
            outs.append(model.eval()(x))
    return (outs[0] - outs[1]).abs().max().item()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """One launch of the main scenario, after a one-process run has left a checkpoint for it to resume."""
    out = tmp_path_factory.mktemp("ddp")
    torch.set_num_threads(1)
    interrupted(out / "one" / "checkpoint.pt")
    done = torchrun("main", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done


def test_two_processes_train_as_one_does(two_processes):
    out, _ = two_processes
    one, history = run(2)
    ddp = torch.load(out / "straight.pt", weights_only=True)
    assert max_difference(one.state_dict(), ddp["weights"]) < TOLERANCE
    assert logits_difference(one.state_dict(), ddp["weights"]) < TOLERANCE
    for a, b in zip(history.epochs, ddp["history"]):  # metrics reduced over both processes
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert abs(a[key] - b[key]) < TOLERANCE, (key, a[key], b[key])


def test_each_process_sees_its_half_of_the_global_batch(two_processes):
    out, _ = two_processes
    for rank in (0, 1):
        batches = json.loads((out / f"batches{rank}.json").read_text())
        assert batches == [GLOBAL_BATCH // 2] * 12, batches  # 96 images, batches of 16: 6 steps x 2 epochs


def test_one_line_of_progress_from_rank_zero_only(two_processes):
    _, done = two_processes
    assert "test_acc" not in done.stdout + done.stderr  # progress=False: silent on every rank
    assert "Traceback" not in done.stderr


def test_a_global_batch_the_processes_cannot_share_is_refused(two_processes):
    out, _ = two_processes
    for rank in (0, 1):
        message = (out / f"error{rank}.txt").read_text()
        assert f"global batch of {GLOBAL_BATCH - 1} cannot be split over 2 processes" in message
        assert "14 or 16" in message


def test_a_two_process_checkpoint_resumes_in_one_process_and_back(two_processes):
    out, _ = two_processes
    state = read_checkpoint(out / "ddp" / "checkpoint.pt")  # weights_only=True
    assert not any(k.startswith("module.") for k in state["model"])
    assert state["epoch"] == 1 and len(state["extra"]["rank_rng"]) == 2
    straight, _ = run(2)
    resumed, history = run(2, checkpoint=out / "ddp" / "checkpoint.pt")
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    assert max_difference(straight.state_dict(), resumed.state_dict()) < TOLERANCE
    assert logits_difference(straight.state_dict(), resumed.state_dict()) < TOLERANCE
    back = torch.load(out / "resumed_from_one.pt", weights_only=True)
    assert max_difference(straight.state_dict(), back["weights"]) < TOLERANCE
    assert logits_difference(straight.state_dict(), back["weights"]) < TOLERANCE


def test_synchronised_batch_norm_on_cpu_processes_is_refused(two_processes):
    out, _ = two_processes
    for rank in (0, 1):
        message = (out / f"sync_bn_error{rank}.txt").read_text()
        assert "sync_batchnorm=True needs GPUs" in message and "sync_batchnorm=False" in message
    run(1, model_name="resnet8", sync_batchnorm=True)  # one process: no effect, no error


def test_a_kill_under_torchrun_then_a_rerun_is_exact(two_processes, tmp_path):
    out, _ = two_processes
    killed = torchrun("kill", tmp_path, 8)  # 5 saves inside epoch 1, 1 at its end, then steps 1 and 2
    assert killed.returncode != 0
    state = read_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert state["epoch"] == 1 and state["position"]["step"] == 2, (state["epoch"], state.get("position"))
    again = torchrun("resume", tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    a = torch.load(out / "straight.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed_after_kill.pt", weights_only=True)
    for name in a["weights"]:
        assert torch.equal(a["weights"][name], b["weights"][name]), f"{name} differs after the kill and the re-run"
    assert [e["train_loss"] for e in a["history"]] == [e["train_loss"] for e in b["history"]]


def test_the_command_line_under_torchrun(tmp_path):
    args = ["vitcourse.train", "--model", "vit_smoke_patch8_32", "--dataset", "synthetic", "--epochs", "1",
            "--batch-size", "64", "--crop-padding", "2", "--flip", "--out", tmp_path / "cli", "--no-progress"]
    done = torchrun(*args, module=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, done.stdout  # rank 0 prints the result; rank 1 does not
    final = json.loads(lines[0])
    history = json.loads((tmp_path / "cli" / "history.json").read_text())
    assert history["final"] == final and final["epoch"] == 1
    assert not any(k.startswith("module.") for k in read_checkpoint(tmp_path / "cli" / "checkpoint.pt")["model"])


# ---- checks that need no second process ---------------------------------------------------------------
def test_a_mix_of_devices_is_refused():
    distributed.check_same_device_type(["cuda", "cuda"])
    with pytest.raises(RuntimeError, match=r"mix of devices \(rank 0: cuda, rank 1: cpu\)"):
        distributed.check_same_device_type(["cuda", "cpu"])


def test_a_gpu_that_is_not_the_local_rank_s_is_refused():
    world = distributed.World(rank=1, size=2, local_rank=1)
    assert distributed.device_for(world, torch.device("cuda")) == torch.device("cuda", 1)
    assert distributed.device_for(None, torch.device("cuda")) == torch.device("cuda")
    with pytest.raises(ValueError, match="local rank 1 owns cuda:1"):
        distributed.device_for(world, torch.device("cuda", 0))


def test_a_last_batch_the_processes_cannot_share_is_refused():
    world = distributed.World(rank=0, size=2, local_rank=0)
    from vitcourse.data import DeviceLoader, synthetic
    data = synthetic("train", n=33, image_size=32, seed=0)
    distributed.check_global_batch(world, DeviceLoader(data, 16, drop_last=True, device="cpu"))
    with pytest.raises(ValueError, match="last batch of an epoch has 1 of the 33 samples"):
        distributed.check_global_batch(world, DeviceLoader(data, 16, device="cpu"))


def test_synchronised_batch_norm_is_swapped_back_with_its_trained_state():
    from vitcourse.models import create_model
    model = create_model("resnet8", num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    swaps = distributed.convert_batchnorm(model)
    assert swaps and all(isinstance(getattr(p, n), torch.nn.SyncBatchNorm) for p, n, _ in swaps)
    for _, bn in model.named_modules():
        if isinstance(bn, torch.nn.SyncBatchNorm):
            bn.running_mean.add_(1.0)  # as if trained
    distributed.restore_batchnorm(swaps)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in after if k.endswith("running_mean")]
    assert changed and all(torch.allclose(after[k], before[k] + 1) for k in changed)


def test_one_process_is_not_distributed():
    assert distributed.current() is None and distributed.setup() is None
