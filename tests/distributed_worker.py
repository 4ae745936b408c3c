"""What tests/test_distributed.py runs, in one process or under torchrun (gloo, on the CPU).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py SCENARIO OUT [ARGS]

``run(...)`` is the training run every comparison uses: a small ViT without dropout or drop-path
(their masks come from each process's own random stream, so only the deterministic parts can match
to 1e-5), trained with random crops and flips on a global batch of 16.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import torch

from vitcourse import distributed
from vitcourse import train as T
from vitcourse.data import DeviceLoader, synthetic
from vitcourse.models import create_model

GLOBAL_BATCH = 16


class Disconnect(Exception):
    """The end of a session: the run stops after an epoch's checkpoint, to be resumed later."""


def run(epochs: int, checkpoint=None, batch_size: int = GLOBAL_BATCH, batches: list | None = None,
        stop_after: int | None = None, model_name: str = "vit_smoke_patch8_32", **fit_args):
    """Train the test's ViT (or ``model_name``) for ``epochs`` and return it; ``batches`` collects the
    batch size of every training forward pass this process makes; ``stop_after``: raise Disconnect
    after that epoch."""
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10)
    if batches is not None:
        model.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]) if m.training else None)
    data = synthetic("train", n=96, image_size=32, seed=3)
    loader = DeviceLoader(data, batch_size, crop_padding=2, flip=True, seed=7, device="cpu")
    test = DeviceLoader(synthetic("test", n=40, image_size=32, seed=4), 13, shuffle=False, device="cpu")


    def on_epoch_end(epoch, history):
        if epoch == stop_after:
            raise Disconnect

    history = T.fit(model, loader, test, epochs=epochs, lr=2e-3, warmup_epochs=0.5, progress=False,
                    device="cpu", checkpoint=checkpoint, on_epoch_end=on_epoch_end, **fit_args)
    return model, history


def interrupted(checkpoint, **kw) -> None:
    """A two-epoch run that stops after its first epoch, leaving its checkpoint."""
    try:
        run(2, checkpoint=checkpoint, stop_after=1, **kw)
    except Disconnect:
        return
    raise AssertionError("the run did not stop after its first epoch")


def _save(model, history, path: Path) -> None:
    torch.save({"weights": model.state_dict(), "history": history.epochs}, path)


def main(scenario: str, out: str, *args: str) -> None:
    torch.set_num_threads(1)
    world = distributed.setup()
    rank = world.rank if world else 0
    out = Path(out)
    if scenario == "main":
        # 1. A global batch the processes cannot share: the error, on every process, before any step.
        try:
            run(1, batch_size=GLOBAL_BATCH - 1)
        except ValueError as err:
            (out / f"error{rank}.txt").write_text(str(err))
        # 2. Two epochs straight, recording the batches this process's model sees.
        batches: list = []
        model, history = run(2, batches=batches)
        (out / f"batches{rank}.json").write_text(json.dumps(batches))
        if rank == 0:
            _save(model, history, out / "straight.pt")
        # 3. A run stopped after one of its two epochs (for a one-process run to resume), and a
        #    one-process run stopped so, resumed here.
        interrupted(out / "ddp" / "checkpoint.pt")
        model, history = run(2, checkpoint=out / "one" / "checkpoint.pt")
        if rank == 0:
            _save(model, history, out / "resumed_from_one.pt")
        # 4. Synchronised batch norm on CPU processes: PyTorch's SyncBatchNorm is CUDA-only.
        try:
            run(1, model_name="resnet8", sync_batchnorm=True)
        except ValueError as err:
            (out / f"sync_bn_error{rank}.txt").write_text(str(err))
    elif scenario == "kill":
        # Saves after every step; rank 0 is killed (SIGKILL: no cleanup) right after save number N,
        # and torchrun then stops the other process.
        kill_after, count = int(args[0]), [0]
        real = T.save_checkpoint

        def save_then_die(*a, **k):
            real(*a, **k)
            count[0] += 1
            if count[0] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

        T.save_checkpoint = save_then_die
        run(2, checkpoint=out / "killed" / "checkpoint.pt", checkpoint_minutes=0)
    elif scenario == "resume":
        model, history = run(2, checkpoint=out / "killed" / "checkpoint.pt", checkpoint_minutes=0)
        if rank == 0:
            _save(model, history, out / "resumed_after_kill.pt")
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    distributed.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:])
