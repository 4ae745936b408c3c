"""``fit`` and ``evaluate``: the one training loop every chapter uses.

AdamW with decoupled weight decay (on weights, not on norms, biases or embeddings), a linear warm-up
then cosine decay stepped per batch, label smoothing and soft targets (MixUp/CutMix), gradient
clipping, the precision policy of ``vitcourse.runtime``, optional ``torch.compile``, and atomic
checkpoints after every epoch and every few minutes inside one, from which a run resumes exactly.

Under ``torchrun`` the same call trains data-parallel on every process (``vitcourse.distributed``).

Command line: ``python -m vitcourse.train --model resnet20 --dataset fashion_mnist --epochs 5 --out runs/r20``,
or ``torchrun --nproc_per_node=2 -m vitcourse.train ...`` with the same flags.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import distributed, rehearsal, runtime
from ._io import atomic_write_json
from .checkpoint import (check_fingerprint, describe_loader, describe_model, load_checkpoint, rng_state,
                         save_checkpoint, set_rng_state)
from .data.sequences import IGNORE_INDEX  # padded targets count for neither loss nor accuracy


@dataclass
class History:
    """Per-epoch records: epoch, train_loss, train_acc, <val_name>_loss, <val_name>_acc, lr, seconds,
    <unit>_per_s (images_per_s, sentences_per_s...).

    ``val_name`` is what the evaluation set is ("val" when held out from the training data, "test"
    when it is the test split); ``train_loss_note`` says how the training loss differs from the
    evaluation loss (label smoothing, mixed targets), so that a plot does not compare unlike things.
    """
    epochs: list[dict] = field(default_factory=list)
    val_name: str = "val"
    train_loss_note: str = ""

    @property
    def last(self) -> dict:
        return self.epochs[-1] if self.epochs else {}

    def __getitem__(self, key: str) -> list:
        return [e.get(key) for e in self.epochs]

    def to_dict(self) -> dict:
        return {"epochs": self.epochs, "val_name": self.val_name, "train_loss_note": self.train_loss_note}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(list(d["epochs"]), d.get("val_name", "val"), d.get("train_loss_note", ""))

    def plot(self, title: str = "training curves"):
        """Loss and accuracy against epoch, on the training batches and on the evaluation set."""
        import matplotlib.pyplot as plt
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
        note = f" ({self.train_loss_note})" if self.train_loss_note else ""
        labels = {"train": {"loss": f"train, as optimised{note}", "acc": "train (running, during each epoch)"},
                  self.val_name: {"loss": f"{self.val_name} (plain cross-entropy)", "acc": self.val_name}}
        for ax, metric in ((ax_loss, "loss"), (ax_acc, "acc")):
            for split, label in labels.items():
                values = self[f"{split}_{metric}"]
                if any(v is not None for v in values):
                    ax.plot(self["epoch"], values, marker="o", label=label[metric])
            ax.set(xlabel="epoch", ylabel="cross-entropy" if metric == "loss" else "accuracy",
                   title=f"{title}: {metric}")
            ax.legend(fontsize=8)
        if note:
            ax_loss.text(0.0, -0.28, f"The training loss includes {self.train_loss_note}, so it stays above "
                         f"the {self.val_name} loss even without overfitting.", transform=ax_loss.transAxes,
                         fontsize=8, va="top")
        fig.tight_layout()
        return fig


def logits_of(outputs):
    """The class logits of a model output (a DeiT-style tuple gives its first element)."""
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def cross_entropy(outputs, targets, label_smoothing: float = 0.0):
    """Cross-entropy over the last dimension; (B, T, V) sequence outputs are flattened and targets
    equal to IGNORE_INDEX are skipped; float targets are soft labels (MixUp/CutMix)."""
    logits = logits_of(outputs)
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1, targets.shape[-1]) if targets.is_floating_point() else targets.reshape(-1)
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing, ignore_index=IGNORE_INDEX)


def _correct_and_count(outputs, targets):
    """(number of correct predictions, number of counted targets), both as device tensors (no sync)."""
    pred = logits_of(outputs).argmax(-1)
    if targets.is_floating_point():  # soft labels: the class with the largest share
        targets = targets.argmax(-1)
    valid = targets != IGNORE_INDEX
    return ((pred == targets) & valid).sum(), valid.sum()


def _to(x, dev):
    if isinstance(x, (tuple, list)):
        return type(x)(_to(t, dev) for t in x)
    return x.to(dev, non_blocking=True) if torch.is_tensor(x) else x


def _call(model, inputs):
    return model(*inputs) if isinstance(inputs, (tuple, list)) else model(inputs)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying norms, biases, the class token or
    position embeddings pulls them to zero for no gain (the convention of BERT, ViT and timm)."""
    skip = set(getattr(model, "no_weight_decay", lambda: ())())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name in skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """lr multiplier: linear from ~0 to 1 over warm-up, then cosine from 1 to 0 (Loshchilov & Hutter 2017)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn=None, device=None) -> dict:
    """Mean loss and accuracy of ``model`` over ``loader`` (eval mode, no gradients).

    Under torchrun every process must call it: each evaluates its slice of every batch and the sums
    are added up over the processes, so all of them return the result over the whole loader."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    world = distributed.current()
    if world is not None:
        loader = distributed.RankSlices(loader, world, even=False)
    policy = rehearsal.unmeasured(runtime.precision_for(dev), dev.type)
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    count = torch.zeros((), device=dev, dtype=torch.long)
    with runtime.evaluating(model):
        for inputs, targets in rehearsal.batches(loader):
            if targets.shape[0] == 0:  # a process's share of a last batch smaller than the processes
                continue
            inputs, targets = _to(inputs, dev), _to(targets, dev)
            with policy.autocast(dev.type):
                outputs = _call(model, inputs)
                loss = loss_fn(outputs, targets, inputs) if loss_fn else cross_entropy(outputs, targets)
            c, k = _correct_and_count(outputs, targets)
            loss_sum += loss.float() * k
            correct += c
            count += k
    if world is not None:
        loss_sum, correct, count = distributed.all_sum(loss_sum, correct, count)
    n = max(int(count), 1)
    return {"loss": float(loss_sum) / n, "acc": int(correct) / n}


@torch.no_grad()
def predict(model: nn.Module, loader, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, targets) over ``loader``, on the CPU: for confusion matrices and error plots."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    policy = rehearsal.unmeasured(runtime.precision_for(dev), dev.type)
    preds, targets = [], []
    with runtime.evaluating(model):
        for inputs, y in rehearsal.batches(loader):
            with policy.autocast(dev.type):
                preds.append(logits_of(_call(model, _to(inputs, dev))).argmax(-1).cpu())
            targets.append(y.cpu())
    return torch.cat(preds), torch.cat(targets)


def fit(model: nn.Module, train, val=None, *, epochs: int, lr: float = 1e-3, weight_decay: float = 0.05,
        warmup_epochs: float = 0.0, label_smoothing: float = 0.0, grad_clip: float | None = 1.0,
        betas=(0.9, 0.999), compile: bool = False, checkpoint=None, resume: bool = True,
        checkpoint_minutes: float | None = 5.0, loss_fn=None, progress: bool = True, on_epoch_end=None,
        measure=None, device=None, val_name: str = "val", sync_batchnorm: bool = False) -> History:
    """Train ``model`` on ``train`` (re-iterable (inputs, targets) batches with a len()) for ``epochs``.

    ``val``: a loader evaluated after every epoch, recorded as ``<val_name>_loss`` / ``<val_name>_acc``
    (say ``val_name="test"`` when it is the test split).
    ``checkpoint``: a path written atomically after every epoch, with the run's fingerprint (model
    class and config, optimiser, schedule, loss, data). When it exists and ``resume`` is true, the
    same run continues from it (a finished run returns its history at once); a checkpoint of a
    different run is an error naming what differs. ``vitcourse.study.run_dir`` gives each config
    its own folder.
    ``checkpoint_minutes``: inside an epoch, the checkpoint is also written every this many minutes
    of training (None: at epoch ends only; 0: after every step), with the loader's position, so a
    run of one long epoch (``FixedSteps``) cut off by a disconnect loses at most that much. Resuming
    from such a save ends with exactly the weights of an uninterrupted run.
    ``loss_fn(outputs, targets, inputs)`` replaces the default label-smoothed cross-entropy, e.g.
    for distillation; it runs under the precision policy's autocast, like the model.
    ``measure(model) -> dict``: numbers to keep in every epoch's record (saved with it), e.g. a learned
    temperature or an attention entropy as training goes; called in eval mode without gradients, and
    it must draw no random numbers (a resumed run would then differ).
    ``on_epoch_end(epoch, history)`` is called after each epoch's checkpoint.

    Under torchrun (or in any initialised process group of several processes) the run is
    data-parallel and otherwise the same: ``train``'s batch size is the global batch, each process
    trains on its slice of it, metrics and evaluation are over all of them, rank 0 alone shows
    progress and writes the checkpoint (the same file a one-process run writes and resumes), and
    ``on_epoch_end`` runs on every process. ``sync_batchnorm``: batch norm over the global batch
    instead of each process's slice (no effect in one process). See ``vitcourse.distributed``.
    """
    world = distributed.setup()  # None in one process
    dev = distributed.device_for(world, torch.device(device) if device is not None else runtime.device())
    model.to(dev)
    policy = runtime.precision_for(dev)
    steps_per_epoch = len(train)
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batch; lower the batch size or turn off drop_last")
    swaps = []  # batch-norm layers swapped for synchronised ones, put back at the end
    if world is not None:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)  # NCCL's collectives run on the current GPU: make it this rank's
        types = [None] * world.size
        torch.distributed.all_gather_object(types, dev.type)
        distributed.check_same_device_type(types)
        distributed.check_global_batch(world, train)
        if rehearsal.active():
            raise RuntimeError("a rehearsal (VITCOURSE_REHEARSAL=1) plans one-process runs; run it without torchrun")
        if compile and dev.type != "cuda":
            raise ValueError("compile=True with several processes is supported here on GPUs only (torch.compile "
                             "of a DDP model); on the CPU it gains little for these models (benchmarks/RESULTS.md): "
                             "pass compile=False")
        if sync_batchnorm and dev.type != "cuda":
            raise ValueError("sync_batchnorm=True needs GPUs (PyTorch's SyncBatchNorm runs on CUDA only); on CPU "
                             "processes pass sync_batchnorm=False: batch norm then normalises each process's slice")
        if sync_batchnorm:
            swaps = distributed.convert_batchnorm(model)
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(epochs * steps_per_epoch, round(warmup_epochs * steps_per_epoch)))
    scaler = torch.amp.GradScaler(dev.type) if policy.use_scaler else None
    loss_name = getattr(loss_fn, "fingerprint", None) or getattr(loss_fn, "__qualname__", None)
    fingerprint = {
        "model": describe_model(model),
        "optimizer": {"name": "AdamW", "lr": lr, "weight_decay": weight_decay, "betas": list(betas),
                      "grad_clip": grad_clip},
        "schedule": {"epochs": epochs, "warmup_epochs": warmup_epochs, "steps_per_epoch": steps_per_epoch},
        "loss": {"label_smoothing": label_smoothing, "loss_fn": loss_name},
        "data": describe_loader(train),
    }
    mixed = getattr(train, "mixes_targets", False)
    notes = [f"label smoothing {label_smoothing:g}" if label_smoothing else "", "mixed targets" if mixed else ""]
    history, start = History(val_name=val_name, train_loss_note=" and ".join(n for n in notes if n)), 0
    position = None  # where a save inside an epoch left off
    state = None
    if checkpoint is not None and resume and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                                check=lambda st: check_fingerprint(st, fingerprint, checkpoint))
        history.epochs, start, position = list(state["history"]), state["epoch"], state.get("position")
    net, batches_of = model, train  # what trains (the DDP wrapper) and what it iterates (this rank's slices)
    if world is not None:
        # Each process's own random stream (dropout, drop-path): restored from a checkpoint of as many
        # processes, else derived from rank 0's. Rank 0 keeps its stream, as in one process.
        saved = ((state or {}).get("extra") or {}).get("rank_rng")
        if saved is not None and len(saved) == world.size:
            set_rng_state(saved[world.rank])
        elif world.rank:
            torch.manual_seed(distributed.rank_seed(int(torch.randint(2**62, (1,))), world.rank))
        # DDP broadcasts rank 0's weights now and averages the gradients after every backward pass.
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        batches_of = distributed.RankSlices(train, world)
    show = progress and (world is None or world.main)  # one bar and one line per epoch, on rank 0
    if compile:
        net.compile()  # in place (DDP first, as PyTorch's DDP notes ask): state_dict keys stay plain
    criterion = loss_fn or (lambda out, tgt, inp: cross_entropy(out, tgt, label_smoothing))
    unit = getattr(train, "unit", "samples")
    refresh = max(1, steps_per_epoch // 10)  # host syncs for the progress bar: ~10 per epoch
    # One bar for the whole run (a live widget in Jupyter), and one printed line per epoch.
    first_step = position["step"] if position else 0
    bar = tqdm(total=epochs * steps_per_epoch, initial=start * steps_per_epoch + first_step, desc="training",
               disable=not show or start >= epochs, unit="step", mininterval=1.0)
    save_every = None if checkpoint is None or checkpoint_minutes is None else 60.0 * checkpoint_minutes
    save_check = 1 if save_every == 0 else refresh  # under DDP: the steps where all processes agree to save
    last_save = time.perf_counter()
    planned = max(0, (epochs - start) * steps_per_epoch - first_step)  # the steps this call has left
    cap, taken = rehearsal.steps(planned), 0  # a rehearsal stops after a few, and measures the first

    def save(epoch_done: int, position=None):
        nonlocal last_save
        extra = {"fingerprint": fingerprint}
        if world is not None:  # every process takes part; rank 0 writes
            extra["rank_rng"] = [None] * world.size
            torch.distributed.all_gather_object(extra["rank_rng"], rng_state())
            if position is not None:
                # Each process's running sums (to resume exactly on as many processes), and their totals
                # (what a one-process run, or rank 0 of another number of processes, resumes from).
                mine = torch.stack([position["loss_sum"].double(), position["correct"].double(),
                                    position["count"].double(), torch.tensor(float(position["seen"]), device=dev,
                                                                             dtype=torch.float64)])
                every = [torch.empty_like(mine) for _ in range(world.size)]
                torch.distributed.all_gather(every, mine)
                every = torch.stack(every).cpu()
                total = every.sum(0)
                position = {**position, "loss_sum": total[0].float(), "correct": total[1].long(),
                            "count": total[2].long(), "seen": int(total[3]), "rank_sums": every}
        if world is None or world.main:
            save_checkpoint(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                            epoch=epoch_done, history=history.epochs, extra=extra, position=position)
        last_save = time.perf_counter()

    try:
        for epoch in range(start, epochs):
            net.train()
            if hasattr(train, "set_epoch"):
                train.set_epoch(epoch)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            count = torch.zeros((), device=dev, dtype=torch.long)
            seen, t0 = 0, time.perf_counter()
            batches, first = batches_of, 0
            if position is not None:  # continue the epoch a save inside it left off
                first = position["step"]
                ranks = position.get("rank_sums")
                if world is not None and ranks is not None and len(ranks) == world.size:  # each its own
                    mine = ranks[world.rank]
                    loss_sum, correct, count = (mine[0].float().to(dev), mine[1].long().to(dev),
                                                mine[2].long().to(dev))
                    seen = int(mine[3])
                elif world is None or world.main:  # the sums over all processes: rank 0 carries them
                    loss_sum, correct, count = (position[k].to(dev) for k in ("loss_sum", "correct", "count"))
                    seen = position["seen"]
                t0 -= position["seconds"]
                if position.get("loader") is not None:
                    train.load_state_dict(position["loader"])
                else:  # a loader that cannot say where it stood: regenerate its epoch, drop what was used
                    batches = itertools.islice(batches_of, first, None)
                position = None
            for step, (inputs, targets) in enumerate(batches, start=first):
                inputs, targets = _to(inputs, dev), _to(targets, dev)
                batch, key, meter = targets.shape[0], None, None
                if rehearsal.active():  # the plan's numbers: measured once per distinct step, the rest on a sliver
                    if taken == 0:
                        key = rehearsal.step_key(model, {k: fingerprint[k] for k in ("model", "loss")}, inputs,
                                                 policy.name)
                    if key is not None and key not in rehearsal.MEASURED:
                        meter = rehearsal.StepMeter(model)
                    else:
                        inputs, targets = rehearsal.sliver(inputs), rehearsal.sliver(targets)
                step_policy = policy if meter is not None else rehearsal.unmeasured(policy, dev.type)
                with meter or contextlib.nullcontext():
                    with step_policy.autocast(dev.type):
                        outputs = _call(net, inputs)
                        loss = criterion(outputs, targets, inputs)
                    if meter is not None:
                        meter.forward_done()
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                    else:
                        loss.backward()
                if grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                taken += 1
                if key is not None:  # after the optimiser step, so that its state exists
                    if meter is not None:
                        rehearsal.MEASURED[key] = meter.result()
                    _plan_run(model, optimizer, rehearsal.MEASURED[key], train, val, batch, planned, epochs, policy)
                c, k = _correct_and_count(outputs, targets)
                loss_sum += loss.detach().float() * k
                correct += c
                count += k
                seen += targets.shape[0]
                bar.update(1)
                if show and (step + 1) % refresh == 0:  # rank 0's running numbers; its share x the processes
                    n = max(int(count), 1)
                    rate = seen * (world.size if world else 1) / (time.perf_counter() - t0)
                    bar.set_postfix_str(f"epoch {epoch + 1}/{epochs} loss {float(loss_sum) / n:.3f} "
                                        f"acc {int(correct) / n:.3f} {rate:.0f} {unit}/s", refresh=False)
                due = (save_every is not None and step + 1 < steps_per_epoch
                       and time.perf_counter() - last_save >= save_every)
                if world is not None and save_every is not None and step + 1 < steps_per_epoch:
                    due = (step + 1) % save_check == 0 and distributed.anyone(due, dev)  # all save, or none
                if due:
                    save(epoch, {"step": step + 1, "loss_sum": loss_sum, "correct": correct, "count": count,
                                 "seen": seen, "seconds": time.perf_counter() - t0,
                                 "loader": train.state_dict() if hasattr(train, "state_dict") else None})
                if taken == cap:  # the end of the run, or of a rehearsal's few steps
                    break
            if world is not None:  # the epoch's sums over all processes
                loss_sum, correct, count, seen_all = distributed.all_sum(loss_sum, correct, count,
                                                                         torch.tensor(seen, device=dev))
                seen = int(seen_all)
            n = max(int(count), 1)  # one sync per epoch
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch + 1, "train_loss": float(loss_sum) / n, "train_acc": int(correct) / n,
                      "lr": scheduler.get_last_lr()[0], "seconds": seconds, f"{unit}_per_s": seen / seconds}
            if val is not None:
                metrics = evaluate(model, val, device=dev)
                record.update({f"{val_name}_loss": metrics["loss"], f"{val_name}_acc": metrics["acc"]})
            if measure is not None:
                with runtime.evaluating(model), torch.no_grad():
                    record.update(measure(model))
            history.epochs.append(record)
            if show:
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if checkpoint is not None:
                save(epoch + 1)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, history)
            if taken == cap and cap < planned:  # a rehearsal: this epoch's record and evaluation were the test
                break
    finally:
        bar.close()
        if world is not None:
            # Release the DDP wrapper (also after an error) before anyone destroys the process group:
            # with gloo, a process that exits holding one aborts now and then ("terminate called
            # without an active exception").
            net = None
            gc.collect()
            distributed.restore_batchnorm(swaps)
    if world is not None:
        torch.distributed.barrier()  # rank 0's last checkpoint is written before any process goes on
    return history


def _num_samples(loader) -> int:
    """How many samples one pass over ``loader`` evaluates (its data set's size where it says)."""
    inner = loader
    while inner is not None and not hasattr(inner, "data"):
        inner = getattr(inner, "loader", None)
    if inner is not None and hasattr(inner.data, "__len__"):
        return len(inner.data)
    return len(loader) * getattr(loader, "batch_size", 1)


def _plan_run(model, optimizer, step: dict, train, val, batch, planned, epochs, policy) -> None:
    """One training run in the rehearsal's plan: its steps, FLOPs per step and memory (vitcourse.plan)."""
    memory = {**rehearsal.model_state_bytes(model, optimizer), "saved_activations": step["saved_bytes"],
              "device_data": rehearsal.device_data_bytes(train) + rehearsal.device_data_bytes(val)}
    eval_images = epochs * _num_samples(val) if val is not None else 0
    rehearsal.record({
        "model": type(model).__name__, "config": describe_model(model)["config"],
        "params": sum(p.numel() for p in model.parameters()), "batch": batch, "steps": planned,
        "precision": policy.name, "flops_per_step": step["flops"], "forward_flops_per_step": step["forward_flops"],
        "eval_images": eval_images, "eval_flops": step["forward_flops"] / batch * eval_images,
        "memory_bytes": memory, "peak_memory_bytes": sum(memory.values())})


def main(argv=None) -> dict:
    """``python -m vitcourse.train``: train a registered model on a data set, write checkpoint + history.
    Under ``torchrun --nproc_per_node=N -m vitcourse.train`` the same flags train on N processes."""
    from ._names import unknown_name
    from .data import DeviceLoader, load, subset
    from .data.images import LOADERS
    from .models import create_model, list_models

    p = argparse.ArgumentParser(prog="python -m vitcourse.train", description=main.__doc__)
    p.add_argument("--model", required=True, help="a name from vitcourse.models.list_models()")
    p.add_argument("--dataset", required=True, help="cifar10, cifar100, fashion_mnist or synthetic")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for checkpoint.pt and history.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--crop-padding", type=int, default=0)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--subset", type=float, default=None, help="fraction of the train split to use")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sync-batchnorm", action="store_true",
                   help="under torchrun: batch norm over the global batch, not each process's slice")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    def fail(message: str):
        # argparse's error line and exit status 2, without the usage above it: the usage would not
        # say what is wrong with a well-formed command line.
        p.exit(2, f"{p.prog}: error: {message}\n")

    # Every argument is checked before the data set is loaded (a download) or a model built.
    if args.model not in list_models():
        fail(f"argument --model: {unknown_name('model', args.model, list_models())}")
    if args.dataset not in LOADERS:
        fail(f"argument --dataset: {unknown_name('data set', args.dataset, LOADERS)}")
    for flag, ok, rule in (
            ("--epochs", args.epochs >= 1, "must be at least 1 (0 epochs trains nothing)"),
            ("--batch-size", args.batch_size >= 1, "must be at least 1"),
            ("--lr", args.lr > 0, "must be positive"),  # written so that a NaN fails too
            ("--weight-decay", args.weight_decay >= 0, "cannot be negative"),
            ("--warmup-epochs", args.warmup_epochs >= 0, "cannot be negative"),
            ("--label-smoothing", 0 <= args.label_smoothing < 1, "must be in [0, 1)"),
            ("--crop-padding", args.crop_padding >= 0, "cannot be negative"),
            ("--subset", args.subset is None or 0 < args.subset <= 1,
             "must be a fraction of the train split, in (0, 1]")):
        if not ok:
            fail(f"argument {flag}: {rule}, got {getattr(args, flag[2:].replace('-', '_'))}")
    out = Path(args.out)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not args.resume:
        fail(f"{ckpt} exists; pass --resume to continue that run, or choose another --out")
    world = distributed.setup()  # under torchrun: join the group before the data goes to this rank's device
    runtime.seed_everything(args.seed)
    train, test = load(args.dataset, "train"), load(args.dataset, "test")
    if args.subset:
        train = subset(train, args.subset, seed=args.seed)
    c, h, _ = train.shape
    model = create_model(args.model, num_classes=len(train.classes), in_channels=c, image_size=h)
    train_loader = DeviceLoader(train, args.batch_size, crop_padding=args.crop_padding, flip=args.flip,
                                seed=args.seed)
    test_loader = DeviceLoader(test, 512, shuffle=False)
    history = fit(model, train_loader, test_loader, epochs=args.epochs, lr=args.lr,
                  weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                  label_smoothing=args.label_smoothing, checkpoint=ckpt, resume=args.resume,
                  progress=not args.no_progress, sync_batchnorm=args.sync_batchnorm)
    result = {"args": vars(args), "history": history.to_dict(), "final": history.last}
    if world is None or world.main:
        atomic_write_json(result, out / "history.json")
        print(json.dumps(history.last))
    distributed.teardown()
    return result


if __name__ == "__main__":
    main()
