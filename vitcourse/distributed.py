"""Data-parallel training over processes with ``torch.distributed``: what ``fit`` does under torchrun.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script, one per GPU, and tells each
its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. ``fit`` joins that process group
(NCCL on GPUs, gloo on CPUs), wraps the model in ``DistributedDataParallel`` (DDP: after every
backward pass each process's gradients are averaged over the processes, so all of them take the same
optimiser step), and gives each process its slice of every batch:

    global batch (B samples, drawn and augmented exactly as in one process)
        -> rank 0 trains on samples [0, B/N), rank 1 on [B/N, 2B/N), ...

The loader's ``batch_size`` stays the *global* batch: a mean loss over B/N samples, averaged over N
processes by DDP, is the mean over the B samples, so the run does not depend on N beyond the order of
floating-point sums (tests/test_distributed.py checks it to 1e-5). Two things do depend on N, as in
every data-parallel trainer: batch norm normalises each process's slice (``fit(sync_batchnorm=True)``
normalises over the global batch instead, on GPUs: PyTorch's SyncBatchNorm is CUDA-only), and dropout or stochastic depth draws its masks from each
process's own random stream.
"""
from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from .data.loader import _LoaderWrapper


@dataclass(frozen=True)
class World:
    """This process's place in the process group."""
    rank: int          # 0 .. size - 1; rank 0 prints, shows progress and writes checkpoints
    size: int          # the number of processes
    local_rank: int    # the rank on this machine: the GPU it uses

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True in a process that torchrun started as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> World | None:
    """The initialised process group of more than one process, or None (one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    rank = dist.get_rank()
    local = os.environ.get("LOCAL_RANK")
    local_rank = int(local) if local is not None else rank % max(1, torch.cuda.device_count())
    return World(rank, dist.get_world_size(), local_rank)


def setup(backend: str | None = None) -> World | None:
    """Join the process group torchrun describes, once (NCCL when there is a GPU, gloo otherwise), and
    make this process's GPU the one of its ``LOCAL_RANK``. A group already initialised (by the
    script, or by ``torch.multiprocessing``) is used as it is. Returns None outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return current()
    if not launched():
        return None
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run in one process (without torchrun)")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"torchrun started local rank {local_rank}, but this machine has "
                               f"{torch.cuda.device_count()} GPU(s): use --nproc_per_node={torch.cuda.device_count()} "
                               "or fewer")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    atexit.register(teardown)  # a script that never calls teardown() still leaves the group cleanly
    return current()


def teardown() -> None:
    """Leave the process group (after every DDP module is released: see ``fit``)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        # Why collect now: with torch 2.14's gloo, objects of the group still held by reference cycles
        # were freed during interpreter finalisation, where their threads could not be joined, and the
        # process aborted after its work was done ("terminate called without an active exception",
        # SIGABRT; 2 exits in 12 on a loaded machine). Freed here, while the interpreter is whole, they
        # shut down cleanly (0 in 20).
        gc.collect()


def device_for(world: World | None, requested: torch.device) -> torch.device:
    """The device this process trains on: under torchrun on GPUs, the GPU of its local rank."""
    if world is None or requested.type != "cuda":
        return requested
    if requested.index is None:
        return torch.device("cuda", world.local_rank)
    if requested.index != world.local_rank:
        raise ValueError(f"rank {world.rank} was asked to train on {requested}, but its local rank "
                         f"{world.local_rank} owns cuda:{world.local_rank}: pass device=None (or 'cuda') "
                         "under torchrun, so that each process takes its own GPU")
    return requested


def check_same_device_type(types: list[str]) -> None:
    """Every process of a group must train on the same kind of device (one rank's gradients cannot be
    averaged by NCCL with another rank's CPU tensors)."""
    if len(set(types)) > 1:
        where = ", ".join(f"rank {r}: {t}" for r, t in enumerate(types))
        raise RuntimeError(f"the process group trains on a mix of devices ({where}). Give every process "
                           "the same kind: a GPU each (torchrun --nproc_per_node=<number of GPUs>), or the "
                           "CPU for all (CUDA_VISIBLE_DEVICES= torchrun ...)")


def check_global_batch(world: World, loader) -> None:
    """A clear error when the loader's global batch cannot be split evenly over the processes."""
    inner = loader
    while inner is not None and not hasattr(inner, "batch_size"):
        inner = getattr(inner, "loader", None)
    if inner is None:
        return  # a loader that does not say: each batch is checked as it comes (RankSlices)
    b = inner.batch_size
    if b % world.size:
        lower, upper = b // world.size * world.size, -(-b // world.size) * world.size
        raise ValueError(f"the global batch of {b} cannot be split over {world.size} processes; use a batch "
                         f"size that {world.size} divides, e.g. {lower or upper} or {upper}")
    n, drop_last = len(getattr(inner, "data", ())), getattr(inner, "drop_last", True)
    if n and not drop_last and n % b % world.size:
        raise ValueError(f"the last batch of an epoch has {n % b} of the {n} samples, which {world.size} "
                         f"processes cannot split evenly; pass drop_last=True to the loader, or a batch size "
                         f"with a remainder that {world.size} divides")


class RankSlices(_LoaderWrapper):
    """Each batch of ``loader`` cut to this process's rows: rank r gets rows [r B/N, (r + 1) B/N).

    Everything else (length, epochs, position for resuming, description for the run's fingerprint)
    is the wrapped loader's, as for every loader wrapper, so a run's checkpoint is the same whatever
    the number of processes. ``even``: training batches must split evenly (``fit`` checks it first);
    evaluation batches may not, since their sums are added up over the processes.
    """

    def __init__(self, loader, world: World, even: bool = True):
        super().__init__(loader)
        self.world, self.even = world, even

    def _slice(self, x):
        if isinstance(x, (tuple, list)):
            return type(x)(self._slice(t) for t in x)
        if not torch.is_tensor(x):
            return x
        if self.even and x.shape[0] % self.world.size:
            raise ValueError(f"a batch of {x.shape[0]} cannot be split over {self.world.size} processes; "
                             f"use a batch size that {self.world.size} divides, and drop_last=True")
        return x.tensor_split(self.world.size)[self.world.rank]

    def __iter__(self):
        for inputs, targets in self.loader:
            yield self._slice(inputs), self._slice(targets)


def all_sum(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The sums over all processes (new tensors; the arguments are left as they were)."""
    out = [t.clone() for t in tensors]
    for t in out:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return out


def anyone(flag: bool, dev: torch.device) -> bool:
    """True on every process when ``flag`` is true on at least one (a decision all must take together)."""
    t = torch.tensor([int(flag)], device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s own random stream (dropout masks, drop-path): rank 0 keeps ``seed``,
    so a one-process run and rank 0 draw alike; the others get streams of their own."""
    return seed if rank == 0 else (seed * 1_000_003 + rank) % 2**63


def convert_batchnorm(model: nn.Module) -> list:
    """Replace every BatchNorm layer by a SyncBatchNorm with the same state (statistics over the global
    batch); returns what ``restore_batchnorm`` needs to put the originals back."""
    swaps = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
                sync = nn.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                        child.track_running_stats).to(next(iter(child.state_dict().values())).device)
                sync.load_state_dict(child.state_dict())
                sync.train(child.training)
                setattr(parent, name, sync)
                swaps.append((parent, name, child))
    return swaps


def restore_batchnorm(swaps: list) -> None:
    """Put the original BatchNorm layers back, with the state the SyncBatchNorm layers trained to, so
    the model the caller holds works in one process again."""
    for parent, name, original in swaps:
        original.load_state_dict(getattr(parent, name).state_dict())
        setattr(parent, name, original)
