"""Item 2: forward + backward time of ``vitcourse.nn.attention.MultiHeadAttention`` against
``torch.nn.MultiheadAttention`` (self-attention, no mask, ``need_weights=False`` on both: the
weights-returning path is a different, slower algorithm on both sides)."""
from __future__ import annotations

import torch
import torch.nn as nn

from vitcourse import runtime
from vitcourse.nn.attention import MultiHeadAttention

from .common import header, interleaved, median, report, spread, table

DIM, HEADS = 192, 3  # ViT-Ti's width and heads (head width 64)
# sequence length -> batch: 8x8+1 (32 px, patch 4), 14x14+1 (224 px, patch 16), 32x32+1 (patch 7 at 224)
SEQS = {65: 64, 197: 16, 1025: 4}


def make_pass(module, x, dev, ours: bool):
    """A closure running forward + backward once. torch's module is called as in a ViT block."""
    policy = runtime.precision_for(dev)

    def fwd_bwd():
        with policy.autocast(dev.type):
            out = module(x)[0] if ours else module(x, x, x, need_weights=False)[0]
        out.float().sum().backward()
        module.zero_grad(set_to_none=True)
        x.grad = None
    return fwd_bwd


def run(repeats: int = 7, save: bool = True, quick: bool = False) -> list[dict]:
    dev = runtime.device()
    rows, results = [], []
    for n, batch in SEQS.items():
        batch = batch * 8 if dev.type == "cuda" else batch
        if quick:
            batch = max(1, batch // 8)
        torch.manual_seed(0)
        ours = MultiHeadAttention(DIM, HEADS).to(dev)
        theirs = nn.MultiheadAttention(DIM, HEADS, batch_first=True).to(dev)
        with torch.no_grad():  # same weights: the layouts are the same (q | k | v rows)
            theirs.in_proj_weight.copy_(ours.qkv.weight)
            theirs.in_proj_bias.copy_(ours.qkv.bias)
            theirs.out_proj.weight.copy_(ours.proj.weight)
            theirs.out_proj.bias.copy_(ours.proj.bias)
        x = torch.randn(batch, n, DIM, device=dev, requires_grad=True)
        with torch.no_grad():
            gap = (ours(x)[0] - theirs(x, x, x, need_weights=False)[0]).abs().max().item()
        times = interleaved({"ours": make_pass(ours, x, dev, True), "torch": make_pass(theirs, x, dev, False)},
                            repeats, dev, warmup=2)
        t_ours, t_torch = median(times["ours"]), median(times["torch"])
        rows.append([n, batch, f"{1e3 * t_ours:.2f} ({spread(times['ours'])})",
                     f"{1e3 * t_torch:.2f} ({spread(times['torch'])})", f"{t_torch / t_ours:.2f}", f"{gap:.1e}"])
        results.append(dict(seq=n, batch=batch, ours_ms=1e3 * t_ours, torch_ms=1e3 * t_torch))
    text = (f"### 2. Multi-head self-attention forward + backward, width {DIM}, {HEADS} heads, ms per call, "
            f"median of {repeats} interleaved repeats\n\n"
            + table(["seq", "batch", "ours ms", "torch.nn.MultiheadAttention ms", "speed-up (torch/ours)",
                     "max abs diff of outputs"], rows))
    report(text + "\n", save)
    return results


if __name__ == "__main__":
    print(header("attention"))
    run(repeats=3, save=False, quick=True)
