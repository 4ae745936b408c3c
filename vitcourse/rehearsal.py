"""The gpu profile rehearsed on a CPU: ``VITCOURSE_REHEARSAL=1`` (``make rehearsal``).

A learner on Colab should not find a shape error or an out-of-memory after half an hour of training.
In a rehearsal every notebook runs its gpu-profile settings (the real models, batch sizes, image
sizes, class counts and augmentations, on CIFAR-shaped stand-in data made in memory), but every
training run is cut to ``STEPS`` optimiser steps, every evaluation to ``EVAL_BATCHES`` batches and
every timing loop to one repeat. These helpers decide the cuts, for ``fit``, ``evaluate`` and the
notebooks' own loops alike; outside a rehearsal each returns what it was given. The first step of a
model, loss and batch shape not seen before runs at the full batch and is measured; every other
step of a rehearsal runs on a sliver of its batch (``SLIVER`` samples): the same code, at a
fraction of the CPU's time.

While it runs, ``fit`` measures its first step for the plan (``vitcourse.plan``): the FLOPs of the
forward and backward pass (``vitcourse.flops``, attention included) and the memory the step
needs (parameters, gradients, optimiser state, the tensors autograd saves for the backward pass,
counted with saved-tensor hooks, and the data set held on the device), and appends one line per
training run to ``$VITCOURSE_PLAN``.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path

import torch

from .flops import flop_counter

STEPS = 2         # optimiser steps of every training run in a rehearsal (the first is measured)
EVAL_BATCHES = 1  # batches of every evaluation ...
EVAL_SAMPLES = 128  # ... each cut to this many samples (the code path is the same; the CPU's time is not)
SLIVER = 2          # samples of a training step that is not measured
# One measurement per distinct step: a study's runs that differ only in seed, data or learning rate
# have the same FLOPs and activations, and counting them again would only slow the rehearsal down.
MEASURED: dict[str, dict] = {}


def active() -> bool:
    """True in a rehearsal (``$VITCOURSE_REHEARSAL=1``)."""
    return os.environ.get("VITCOURSE_REHEARSAL", "").strip() == "1"


def steps(planned: int) -> int:
    """The optimiser steps to take of ``planned``: all of them, or ``STEPS`` in a rehearsal."""
    return min(planned, STEPS) if active() else planned


def _head(x, k: int):
    if isinstance(x, (tuple, list)):
        return type(x)(_head(t, k) for t in x)
    return x[:k] if torch.is_tensor(x) and x.ndim > 0 else x


def sliver(x):
    """The first ``SLIVER`` samples of a batch's inputs or targets (a tensor, or tuples of them)."""
    return _head(x, SLIVER)


def batches(loader, n: int = EVAL_BATCHES):
    """Iterate over ``loader``: all of it, or in a rehearsal its first ``n`` batches, each cut to its
    first ``EVAL_SAMPLES`` samples (inputs and targets alike, tuples of tensors too)."""
    if not active():
        return loader
    return (_head(batch, EVAL_SAMPLES) for batch in itertools.islice(loader, n))


def repeats(n: int) -> int:
    """How often to repeat a timing: ``n``, or once in a rehearsal."""
    return 1 if active() else n


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class StepMeter:
    """``with StepMeter(model) as m:`` around one training step's forward and backward pass counts
    ``m.flops`` and ``m.saved_bytes``, the bytes of the tensors autograd keeps for the backward pass
    (each storage once; the parameters themselves are counted apart). ``m.forward_flops`` is the
    forward pass alone, once ``m.forward_done()`` is called between the two passes."""

    def __init__(self, model: torch.nn.Module):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}
        self.counter = flop_counter()
        self.forward_flops = None

    def _pack(self, t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.params:
            self.storages.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    def forward_done(self) -> None:
        self.forward_flops = self.counter.get_total_flops()
        self._hooks.__exit__(None, None, None)  # the backward pass saves nothing for later
        self._hooks = None

    def __enter__(self):
        self.counter.__enter__()
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
        self.counter.__exit__(*exc)
        return False

    @property
    def flops(self) -> int:
        return self.counter.get_total_flops()

    def result(self) -> dict:
        return {"flops": self.flops, "forward_flops": self.forward_flops, "saved_bytes": self.saved_bytes}

    @property
    def saved_bytes(self) -> int:
        return sum(self.storages.values())


def step_key(model: torch.nn.Module, description: dict, inputs, precision: str) -> str:
    """What decides a step's FLOPs and saved activations: the model and loss (``description``), which
    parameters train, the shapes and dtypes of the batch, and the precision."""
    def shapes(x):
        if isinstance(x, (tuple, list)):
            return [shapes(t) for t in x]
        return [list(x.shape), str(x.dtype)] if torch.is_tensor(x) else str(x)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return json.dumps([description, trainable, shapes(inputs), precision], sort_keys=True, default=str)


def device_data_bytes(loader) -> int:
    """The bytes of the images and labels a loader (or a loader it wraps) holds on the device."""
    while loader is not None:
        if hasattr(loader, "images") and torch.is_tensor(loader.images):
            return _tensor_bytes(loader.images) + _tensor_bytes(loader.labels)
        loader = getattr(loader, "loader", None)
    return 0


def model_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Parameters, their gradients (one of each), buffers and the optimiser's state tensors, in bytes."""
    params = sum(_tensor_bytes(p) for p in model.parameters())
    trainable = sum(_tensor_bytes(p) for p in model.parameters() if p.requires_grad)
    buffers = sum(_tensor_bytes(b) for b in model.buffers())
    state = sum(_tensor_bytes(v) for s in optimizer.state.values() for v in s.values()
                if torch.is_tensor(v) and v.ndim > 0)
    return {"parameters": params + buffers, "gradients": trainable, "optimizer_state": state}


@contextlib.contextmanager
def loop_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, planned: int, batch: int):
    """Around one step of a notebook's own training loop (forward, backward, optimiser step): in a
    rehearsal, step 0 is measured and the loop's ``planned`` steps go into the plan, as ``fit``'s do."""
    if not active() or step != 0:
        yield
        return
    with StepMeter(model) as meter:
        yield
    memory = {**model_state_bytes(model, optimizer), "saved_activations": meter.saved_bytes, "device_data": 0}
    record({"model": type(model).__name__, "loop": True, "params": sum(p.numel() for p in model.parameters()),
            "batch": batch, "steps": planned, "precision": "fp32", "flops_per_step": meter.flops,
            "forward_flops_per_step": None, "eval_images": 0, "eval_flops": 0.0, "memory_bytes": memory,
            "peak_memory_bytes": sum(memory.values())})


def unmeasured(policy, device_type: str):
    """The precision of rehearsal work whose numbers the plan does not read (the steps run on a sliver,
    evaluations, predictions): the policy's, except bf16 on a CPU without bf16 arithmetic (AVX2 only:
    emulated there, about 30x slower than fp32), which then runs in fp32. The measured steps keep the
    policy's precision, so the plan's memory is what the GPU's bf16 would hold."""
    from .runtime import PRECISIONS
    if (active() and device_type == "cpu" and policy.name == "bf16"
            and not torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return PRECISIONS["fp32"]
    return policy


def plan_file() -> Path | None:
    """Where this process appends its training runs: ``$VITCOURSE_PLAN`` (a JSON-lines file), or None."""
    path = os.environ.get("VITCOURSE_PLAN", "").strip()
    return Path(path) if path else None


def record(run: dict) -> None:
    """Append one training run to the plan (nothing without ``$VITCOURSE_PLAN``)."""
    path = plan_file()
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # one line per run; a cut-off rehearsal leaves the lines it finished
        f.write(json.dumps(run) + "\n")
