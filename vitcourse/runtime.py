"""Where and how the course runs: device, precision, profile, seeds, and an environment report.

Every notebook reads its knobs through ``budget(smoke=..., cpu=..., gpu=...)`` so that one file
serves CI (seconds), a laptop CPU (minutes) and a Colab GPU (the real experiments).
"""
from __future__ import annotations

import contextlib
import os
import platform
import random
import warnings
from dataclasses import dataclass

import numpy as np
import torch

PROFILES = ("smoke", "cpu", "gpu")


def device(prefer_mps: bool = False) -> torch.device:
    """CUDA when available, else the CPU. Apple's MPS is used only when asked for.

    On the CPU, torch keeps its default number of threads (one per core) unless
    ``$VITCOURSE_CPU_THREADS`` says otherwise: set it when a measurement on your machine says fewer
    threads are faster (on a busy shared machine, small models can run faster on 1 thread).
    """
    if torch.cuda.is_available():
        # Under torchrun each process owns the GPU of its LOCAL_RANK (vitcourse.distributed).
        from .distributed import launched
        local = os.environ.get("LOCAL_RANK") if launched() else None
        return torch.device("cuda", int(local)) if local is not None else torch.device("cuda")
    if prefer_mps and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    threads = os.environ.get("VITCOURSE_CPU_THREADS", "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"VITCOURSE_CPU_THREADS={threads!r} is not a positive whole number of threads; "
                             "set e.g. VITCOURSE_CPU_THREADS=2, or unset it for torch's default")
        torch.set_num_threads(int(threads))
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``with evaluating(model):`` runs the block in eval mode (no dropout, batch-norm statistics
    frozen) and restores the mode the model had, even when the block raises."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def profile() -> str:
    """The active profile: ``$VITCOURSE_PROFILE``, else ``gpu`` with CUDA or in a rehearsal
    (``$VITCOURSE_REHEARSAL=1``, which rehearses the gpu profile), and ``cpu`` otherwise."""
    from . import rehearsal
    value = os.environ.get("VITCOURSE_PROFILE", "").strip().lower()
    if rehearsal.active() and value not in ("", "gpu"):
        raise ValueError(f"VITCOURSE_REHEARSAL=1 rehearses the gpu profile, but VITCOURSE_PROFILE={value!r}; "
                         "unset one of them (make rehearsal sets both)")
    if not value:
        return "gpu" if torch.cuda.is_available() or rehearsal.active() else "cpu"
    if value not in PROFILES:
        raise ValueError(
            f"VITCOURSE_PROFILE={value!r} is not a profile; use one of {', '.join(PROFILES)} "
            "(e.g. `export VITCOURSE_PROFILE=smoke`), or unset it for the default.")
    return value


def budget(*, smoke, cpu, gpu):
    """The value for the active profile, e.g. ``epochs = budget(smoke=1, cpu=5, gpu=100)``."""
    return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[profile()]


@dataclass(frozen=True)
class Precision:
    """How to train on a device: autocast dtype (None = fp32) and whether fp16 needs a GradScaler."""
    name: str
    dtype: torch.dtype | None
    use_scaler: bool

    def autocast(self, device_type: str):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.dtype)


PRECISIONS = {"fp32": Precision("fp32", None, False), "bf16": Precision("bf16", torch.bfloat16, False),
              "fp16": Precision("fp16", torch.float16, True)}


def precision_for(dev: torch.device | str | None = None) -> Precision:
    """The precision policy. Decided from the compute capability, not ``is_bf16_supported()``
    (which says yes on a T4, where bf16 is emulated and slow): bf16 on sm80+ (A100, H100...),
    fp16 with a GradScaler below (T4, V100), fp32 on the CPU; in a rehearsal (``vitcourse.rehearsal``)
    bf16 on the CPU too, as the GPU would run (its unmeasured work: ``rehearsal.unmeasured``). ``$VITCOURSE_PRECISION`` (fp32, bf16 or fp16) overrides
    the policy on any device: to debug a T4's fp16 + GradScaler path on a CPU, or to rule out
    precision when a run goes wrong."""
    from . import rehearsal
    dev = torch.device(dev) if dev is not None else device()
    override = os.environ.get("VITCOURSE_PRECISION", "").strip().lower()
    if override:
        if override not in PRECISIONS:
            raise ValueError(f"VITCOURSE_PRECISION={override!r} is not a precision; use one of "
                             f"{', '.join(PRECISIONS)}, or unset it for the device's policy")
        return PRECISIONS[override]
    if dev.type != "cuda":
        return PRECISIONS["bf16"] if rehearsal.active() else PRECISIONS["fp32"]
    major, _ = torch.cuda.get_device_capability(dev)
    return PRECISIONS["bf16"] if major >= 8 else PRECISIONS["fp16"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def torchvision_ops_problem() -> str | None:
    """None when torchvision's compiled operators load, else the error with the fix."""
    try:
        import torchvision
        torchvision.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    except Exception as err:  # the torch/torchvision mismatch shows up here first
        return (f"torchvision's compiled operators do not load ({err}). torch and torchvision come "
                "from mismatched builds; reinstall them together, e.g. "
                "`pip install --upgrade torch torchvision` (on Colab: restart the runtime and do not "
                "reinstall torch).")
    return None


def environment_report() -> str:
    """Versions, device, precision and profile as a short text; warns on a torch/torchvision mismatch."""
    import torchvision
    dev = device()
    lines = [
        f"python       {platform.python_version()}",
        f"torch        {torch.__version__}",
        f"torchvision  {torchvision.__version__}",
    ]
    if dev.type == "cuda":
        cap = torch.cuda.get_device_capability(dev)
        lines.append(f"device       {torch.cuda.get_device_name(dev)} (sm{cap[0]}{cap[1]})")
    else:
        lines.append(f"device       {dev.type} ({platform.processor() or platform.machine()}, "
                     f"{torch.get_num_threads()} threads)")
    lines.append(f"precision    {precision_for(dev).name}")
    lines.append(f"profile      {profile()}")
    problem = torchvision_ops_problem()
    if problem:
        warnings.warn(problem)
        lines.append(f"WARNING      {problem}")
    return "\n".join(lines)
