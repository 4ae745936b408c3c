"""``make gpu-check``: the gpu profile proven on a real GPU in minutes (sized for about 8 on an H100).

On a machine with a CUDA GPU (no network needed):
1. the CUDA tests (``tests/gpu``): the precision policy under real autocast, ``fit`` in bf16 and, forced
   with ``VITCOURSE_PRECISION=fp16``, in fp16 with the GradScaler, ``compile`` on and off, the
   ``DeviceLoader`` augmentations on CUDA, resume on CUDA (how close to bit-exact it is, printed);
2. images/s and achieved FLOP/s of each chapter's gpu-profile models at their batch size, written to
   ``benchmarks/gpu-throughput.json``, which then replaces the assumed throughput of ``vitcourse.plan``;
3. the MFU row of ``make bench`` (a width-384 ViT, batch 1024, the GPU's precision), also against the
   GPU's dense 16-bit datasheet peak (target 35%);
4. the rehearsal of every notebook on CUDA (``make rehearsal``: real kernels, the real precision).
It appends what it measured, with the GPU's name and the date, to ``benchmarks/RESULTS.md``.
On a CPU it runs what does not need a GPU (the CPU half of ``tests/gpu`` and a quick pass of item 2
that checks the code, nothing saved) and says which parts it skipped and why.

    python -m benchmarks.gpu_check [--skip-rehearsal]
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

import torch

from vitcourse import plan, runtime
from vitcourse.data import synthetic
from vitcourse.flops import flop_counter
from vitcourse.recipes import recipe
from vitcourse.transfer import pretrained_vit

from .common import header, interleaved, median, report, table

ROOT = Path(__file__).resolve().parents[1]
THROUGHPUT = Path(__file__).with_name("gpu-throughput.json")
# The gpu profile's models: (label, how to build it, batch, image size); chapter 04's transfer at 224 px.
RECIPES = ("vit", "hybrid", "swin", "resnet")


def _models():
    stand_in = synthetic("train", n=16, image_size=32, channels=3, num_classes=10)
    for name in RECIPES:
        r = recipe(name, "gpu")
        yield f"{r.model} (recipe {name!r})", (lambda r=r: r.build(stand_in)), r.batch_size, 32
    yield "vit_b_32 at 224 px (chapter 04 transfer)", lambda: _random_vit_b_32(), 256, 224


def _random_vit_b_32():
    import torchvision
    from vitcourse.models.convert import vit_from_torchvision
    return vit_from_torchvision(torchvision.models.vit_b_32(weights=None)).reset_head(10)


def step_throughput(build, batch: int, size: int, dev, repeats: int = 10, quick: bool = False) -> dict:
    """One model's training step (AdamW, the precision policy): seconds, images/s and achieved FLOP/s."""
    if quick:
        batch, repeats = 2, 1
    torch.manual_seed(0)
    model = build().to(dev).train()
    policy = runtime.precision_for(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(dev.type) if policy.use_scaler else None
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)

    def step():
        with policy.autocast(dev.type):
            out = model(x)
            out = out[0] if isinstance(out, (tuple, list)) else out
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    with flop_counter() as counter:
        step()
    seconds = median(interleaved({"step": step}, repeats, dev, warmup=2)["step"])
    return {"batch": batch, "seconds": seconds, "images_per_s": batch / seconds,
            "flops_per_step": counter.get_total_flops(), "achieved_flops": counter.get_total_flops() / seconds,
            "precision": policy.name}


def throughput(dev, quick: bool) -> tuple[dict, str]:
    rows, results = [], {}
    for label, build, batch, size in _models():
        m = step_throughput(build, batch, size, dev, quick=quick)
        results[label] = m
        rows.append([label, m["batch"], f"{1e3 * m['seconds']:.1f}", f"{m['images_per_s']:,.0f}",
                     f"{m['achieved_flops'] / 1e12:.2f}", m["precision"]])
    text = table(["model", "batch", "step ms", "images/s", "achieved TFLOP/s", "precision"], rows)
    return results, text


def known_gpu(name: str) -> str | None:
    return next((g for g in plan.GPUS if g in name), None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--skip-rehearsal", action="store_true", help="leave out part 4 (make rehearsal on CUDA)")
    args = p.parse_args(argv)
    dev = runtime.device()
    cuda = dev.type == "cuda"
    save = cuda
    skipped, failed = [], []
    report(header("make gpu-check"), save)

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", str(ROOT / "tests" / "gpu"), "-rs"],
                           cwd=ROOT, capture_output=True, text=True)
    print(tests.stdout[-3000:])
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "no output"
    report(f"### 1. CUDA tests (tests/gpu): {summary}\n", save)
    if tests.returncode != 0:
        failed.append("CUDA tests")

    results, text = throughput(dev, quick=not cuda)
    if cuda:
        name = torch.cuda.get_device_name()
        gpu = known_gpu(name)
        effective = median([m["achieved_flops"] for m in results.values()])
        record = {"gpu": name, "plan_gpu": gpu, "date": datetime.date.today().isoformat(),
                  "torch": torch.__version__, "effective_flops": effective, "models": results}
        THROUGHPUT.write_text(json.dumps(record, indent=1) + "\n")
        report(f"### 2. gpu-profile models on {name}\n\n{text}\nMedian achieved: {effective / 1e12:.2f} TFLOP/s "
               f"(written to benchmarks/gpu-throughput.json for vitcourse.plan).\n", save)
    else:
        print("2. (quick, on the CPU: checks the code; nothing saved)\n" + text)
        skipped.append("2. images/s of the gpu-profile models: no CUDA device (the quick CPU pass only checks the code)")

    if cuda:
        from . import utilisation
        rows = utilisation.run(repeats=5, save=save)
        gpu = known_gpu(torch.cuda.get_device_name())
        if gpu:
            mfu = rows[0]["achieved"] / plan.GPUS[gpu]["peak_flops"]
            report(f"MFU against the {gpu}'s dense 16-bit datasheet peak ({plan.GPUS[gpu]['peak_flops'] / 1e12:.0f} "
                   f"TFLOP/s): {100 * mfu:.0f}% (target 35%).\n", save)
    else:
        skipped.append("3. the MFU row: no CUDA device (make bench measures the CPU)")

    if cuda and not args.skip_rehearsal:
        reh = subprocess.run(["make", "rehearsal"], cwd=ROOT, capture_output=True, text=True)
        tail = (reh.stdout + reh.stderr)[-2500:]
        report(f"### 4. make rehearsal on CUDA: {'passed' if reh.returncode == 0 else 'FAILED'}\n\n```\n{tail}\n```\n", save)
        if reh.returncode != 0:
            failed.append("rehearsal on CUDA")
    else:
        skipped.append("4. the rehearsal on CUDA: " + ("no CUDA device (make rehearsal runs it on this CPU)"
                                                      if not cuda else "--skip-rehearsal"))
    for line in skipped:
        print(f"skipped: {line}")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
