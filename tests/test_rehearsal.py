"""The rehearsal of the gpu profile (vitcourse.rehearsal) and its plan (vitcourse.plan): step caps,
FLOP and memory counts against hand counts, the precision override, the stand-in data."""
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from vitcourse import plan, rehearsal
from vitcourse.data import DeviceLoader, FixedSteps, load, synthetic
from vitcourse.flops import flop_counter
from vitcourse.models import create_model
from vitcourse.runtime import precision_for, profile
from vitcourse.study import Study
from vitcourse.train import evaluate, fit


@pytest.fixture
def rehearsing(monkeypatch, tmp_path):
    """A rehearsal whose plan goes to tmp_path/plan.jsonl."""
    monkeypatch.setenv("VITCOURSE_REHEARSAL", "1")
    monkeypatch.delenv("VITCOURSE_PROFILE", raising=False)
    monkeypatch.delenv("VITCOURSE_PRECISION", raising=False)
    monkeypatch.setenv("VITCOURSE_PLAN", str(tmp_path / "plan.jsonl"))
    monkeypatch.setenv("VITCOURSE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(rehearsal, "MEASURED", {})  # each test measures its own steps
    return tmp_path / "plan.jsonl"


def _runs(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


class MLP(nn.Module):
    """16 -> 8 -> 4 on flattened 1x4x4 images: small enough to count by hand."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.fc1(x.flatten(1)).relu())


def _tiny_images(n=40):
    return synthetic("train", n=n, image_size=4, channels=1, num_classes=4)


def _counting(loss_calls):
    def loss(outputs, targets, inputs):
        loss_calls.append(1)
        return nn.functional.cross_entropy(outputs, targets)
    return loss


def test_outside_a_rehearsal_nothing_is_cut(monkeypatch):
    monkeypatch.delenv("VITCOURSE_REHEARSAL", raising=False)
    assert rehearsal.steps(600) == 600 and rehearsal.repeats(5) == 5
    assert list(rehearsal.batches(range(7))) == list(range(7))


def test_the_helpers_cut_loops_in_a_rehearsal(rehearsing):
    assert rehearsal.steps(600) == rehearsal.STEPS and rehearsal.steps(1) == 1 and rehearsal.repeats(5) == 1
    assert len(list(rehearsal.batches(range(7)))) == rehearsal.EVAL_BATCHES
    big = [((torch.zeros(1000, 3), torch.ones(1000)), torch.arange(1000))] * 3
    (((x, lengths), y),) = list(rehearsal.batches(big, 1))
    assert len(x) == len(lengths) == len(y) == rehearsal.EVAL_SAMPLES
    assert profile() == "gpu"  # a rehearsal rehearses the gpu profile


def test_a_rehearsal_refuses_another_profile(rehearsing, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "cpu")
    with pytest.raises(ValueError, match="rehearses the gpu profile"):
        profile()


def test_fit_stops_at_the_cap_and_plans_every_step(rehearsing, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PRECISION", "fp32")  # hand counts in fp32
    calls = []
    data = _tiny_images(40)
    history = fit(MLP(), DeviceLoader(data, 5, seed=0, device="cpu"), epochs=3, loss_fn=_counting(calls),
                  progress=False, device="cpu")
    assert len(calls) == rehearsal.STEPS and len(history.epochs) == 1
    (run,) = _runs(rehearsing)
    assert run["steps"] == 3 * 8 and run["batch"] == 5
    # Forward: 2*B*(16*8 + 8*4) = 1,600. Backward: fc2's input and weight gradients (2 x 320), fc1's
    # weight gradient only (1,280; the images need no gradient): 1,920.
    assert run["forward_flops_per_step"] == 1_600 and run["flops_per_step"] == 1_600 + 1_920
    params = (16 * 8 + 8 + 8 * 4 + 4) * 4
    assert run["memory_bytes"]["parameters"] == params and run["memory_bytes"]["gradients"] == params
    assert run["memory_bytes"]["optimizer_state"] == 2 * params  # AdamW: two moments per weight
    assert run["memory_bytes"]["device_data"] == 40 * 16 + 40 * 8  # uint8 images, int64 labels


def test_saved_activations_are_counted_once_per_storage():
    model, x = MLP(), torch.randn(5, 1, 4, 4)
    with rehearsal.StepMeter(model) as meter:
        model(x)
        meter.forward_done()
    # fc1 keeps its input (5x16 floats), ReLU its output (5x8), which fc2 keeps too: counted once.
    assert meter.saved_bytes == (5 * 16 + 5 * 8) * 4


def test_attention_flops_are_counted_on_the_cpu():
    """A small ViT's forward FLOPs against a count by hand, QK^T and AV included."""
    model = create_model("vit_smoke_patch8_32", num_classes=10).eval()
    c = model.config
    n = (c.image_size // c.patch_size) ** 2
    t, d, hidden = n + 1, c.dim, int(c.dim * c.mlp_ratio)
    per_block = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * hidden
    expected = 2 * n * (c.patch_size ** 2 * 3) * d + c.depth * per_block + 2 * d * 10
    with flop_counter() as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert counter.get_total_flops() == expected


def test_a_study_run_stops_at_the_cap_in_a_folder_of_its_own(rehearsing):
    calls, data = [], _tiny_images(40)

    def train_one(config):
        model = MLP()
        fit(model, FixedSteps(DeviceLoader(data, 5, seed=0, device="cpu"), config["steps"]), epochs=1,
            loss_fn=_counting(calls), progress=False, device="cpu")
        return {"metrics": {"acc": evaluate(model, DeviceLoader(data, 5, shuffle=False, device="cpu"))["acc"]}}

    study = Study("s")
    study.run({"steps": 50}, train_one)
    assert len(calls) == rehearsal.STEPS and _runs(rehearsing)[0]["steps"] == 50
    study.run({"steps": 70}, train_one)  # the same step again: measured once, planned with its own steps
    first, second = _runs(rehearsing)
    assert len(rehearsal.MEASURED) == 1 and second["steps"] == 70
    assert second["flops_per_step"] == first["flops_per_step"] > 0
    assert study.folder.name == "gpu-rehearsal"  # never mistaken for a real gpu run


def test_evaluate_reads_a_few_batches_in_a_rehearsal(rehearsing):
    seen = []

    class Spy(nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return torch.zeros(x.shape[0], 4)

    spy = Spy()
    spy.dummy = nn.Parameter(torch.zeros(1))
    evaluate(spy, DeviceLoader(_tiny_images(400), 200, shuffle=False, device="cpu"))
    assert seen == [rehearsal.EVAL_SAMPLES] * rehearsal.EVAL_BATCHES


def test_cifar_is_a_stand_in_of_its_shape_in_a_rehearsal(rehearsing):
    test = load("cifar100", "test", download=False)  # no download, no file on disk
    assert test.images.shape == (10_000, 3, 32, 32) and test.images.dtype == torch.uint8
    assert len(test.classes) == 100 and test.name == "cifar100" and int(test.labels.max()) == 99


@pytest.mark.parametrize("name,dtype,scaler", [("fp32", None, False), ("bf16", torch.bfloat16, False),
                                               ("fp16", torch.float16, True)])
def test_the_precision_override(monkeypatch, name, dtype, scaler):
    monkeypatch.setenv("VITCOURSE_PRECISION", name)
    p = precision_for("cpu")
    assert (p.name, p.dtype, p.use_scaler) == (name, dtype, scaler)


def test_the_precision_override_rejects_a_typo(monkeypatch):
    monkeypatch.setenv("VITCOURSE_PRECISION", "f16")
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        precision_for("cpu")


def test_a_rehearsal_trains_in_bf16_on_the_cpu_and_fp16_with_a_scaler_when_asked(rehearsing, monkeypatch):
    assert precision_for("cpu").name == "bf16"
    monkeypatch.setenv("VITCOURSE_PRECISION", "fp16")
    history = fit(MLP(), DeviceLoader(_tiny_images(40), 5, seed=0, device="cpu"), epochs=1, progress=False,
                  device="cpu")
    assert math.isfinite(history.last["train_loss"]) and _runs(rehearsing)[0]["precision"] == "fp16"


def test_the_plan_adds_up_runs_and_turns_flops_into_hours(tmp_path):
    run = {"steps": 1000, "flops_per_step": 1e12, "eval_flops": 5e14, "peak_memory_bytes": 3 * plan.GIB,
           "model": "ViT"}
    (tmp_path / "03_x.jsonl").write_text(json.dumps(run) + "\n" + json.dumps({**run, "steps": 0}) + "\n")
    p = plan.gather(tmp_path)
    chapter = p["chapters"]["03_x"]
    assert chapter["runs"] == 2 and chapter["train_flops"] == 1e15 + 5e14 + 5e14
    t4 = plan.GPUS["T4"]
    assert math.isclose(chapter["hours"]["T4"], 2e15 / (t4["peak_flops"] * t4["utilisation"]) / 3600)
    assert chapter["peak_memory_gib"] == 3.0 and "03_x" in plan.markdown(p)


def test_measured_throughput_replaces_the_assumption_and_scales_by_peak():
    measured = {"gpu": "NVIDIA H100 80GB HBM3", "plan_gpu": "H100", "date": "2026-12-01", "effective_flops": 2e14}
    rates = plan.effective_flops(measured)
    assert rates["H100"][0] == 2e14 and "measured on NVIDIA H100" in rates["H100"][1]
    assert math.isclose(rates["T4"][0], 2e14 * plan.GPUS["T4"]["peak_flops"] / plan.GPUS["H100"]["peak_flops"])


BUILT = Path(__file__).resolve().parents[1] / "build" / "gpu-plan.json"


def _close(a, b, path="plan"):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: {sorted(set(a) ^ set(b))} differ"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6), f"{path}: shipped {a}, rehearsal {b}"
    else:
        assert a == b, f"{path}: shipped {a!r}, rehearsal {b!r}"


def test_the_shipped_plan_is_what_the_rehearsal_of_these_notebooks_computes():
    """make test runs make rehearsal first; the plan shipped in the package must be that plan
    (after changing a notebook's gpu budgets: make rehearsal && cp build/gpu-plan.json vitcourse/gpu_plan.json)."""
    if not BUILT.exists():
        message = "build/gpu-plan.json is missing: run make rehearsal (make test does) before this test"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    shipped = json.loads(plan.SHIPPED.read_text())
    _close(shipped["chapters"], json.loads(BUILT.read_text())["chapters"])


def test_a_notebook_loop_stops_at_the_cap_and_plans_its_steps(rehearsing):
    """The shape of chapter 00's own loop: rehearsal.steps ends it, loop_step measures its first step."""
    model, data = MLP(), _tiny_images(40)
    opt = torch.optim.Adam(model.parameters())
    taken = 0
    for step, (x, y) in enumerate(DeviceLoader(data, 5, seed=0, device="cpu")):
        if step == rehearsal.steps(600):
            break
        with rehearsal.loop_step(model, opt, step, 600, 5):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        taken += 1
    (run,) = _runs(rehearsing)
    assert taken == rehearsal.STEPS and run["steps"] == 600 and run["loop"]
    assert run["flops_per_step"] == 1_600 + 1_920  # the hand count of the fit test above


def test_a_small_vits_memory_against_a_count_by_hand(rehearsing, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PRECISION", "fp32")
    torch.manual_seed(0)
    model = create_model("vit_smoke_patch8_32", num_classes=10)
    c = model.config
    n, d, hidden, b = (c.image_size // c.patch_size) ** 2, c.dim, int(c.dim * c.mlp_ratio), 4
    per_block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    params = (n + 1) * d + (c.patch_size ** 2 * 3 * d + d) + d + c.depth * per_block + 2 * d + (d * 10 + 10)
    fit(model, DeviceLoader(synthetic("train", n=8, image_size=32), b, seed=0, device="cpu"), epochs=1,
        progress=False, device="cpu")
    (run,) = _runs(rehearsing)
    memory = run["memory_bytes"]
    assert run["params"] == params and memory["parameters"] == memory["gradients"] == 4 * params
    assert memory["optimizer_state"] == 8 * params
    # Every block keeps at least its input for LayerNorm's backward: depth x B x T x D floats.
    assert memory["saved_activations"] >= c.depth * b * (n + 1) * d * 4
