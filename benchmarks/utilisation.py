"""Item 5: how close the small ViT's training step comes to the machine's limit.

Model FLOPs of one training step, counted by formula (matrix products only; norms, softmax, GELU
and the optimizer are a few FLOPs per element and are left out, as in Kaplan et al. 2020 and the
PaLM MFU definition). For a ViT with width D, depth L, MLP ratio r, T = N + 1 tokens, N patches of
P x P x C pixels and K classes, per image, forward:

    patch embedding   2 N (P^2 C) D
    per layer/token   2 (3D^2 + D^2 + 2 r D^2) = (8 + 4r) D^2   qkv, proj, fc1 + fc2
                      + 4 T D                                   Q K^T and A V
    all layers        L T ((8 + 4r) D^2 + 4 T D)
    head              2 D K

and forward + backward = 3 x forward (the backward computes two products per forward product: the
gradient of the input and of the weight). ``torch.utils.flop_counter`` counts the same products
from the actual run, as a check of the formula.

The peak is the FLOP/s of a large square matrix product (2 n^3 FLOPs) measured in the same process,
interleaved with the training steps: what this machine delivers now, not a datasheet figure.
"""
from __future__ import annotations

import torch

from vitcourse import runtime
from vitcourse.flops import flop_counter
from vitcourse.models.vit import ViT, ViTConfig, config_of
from vitcourse.recipes import recipe

from .common import header, interleaved, median, report, spread, table
from .train_step import make_step

FORMULA = ("train FLOPs/image = 3 x [2N(P^2C)D + L*T*((8+4r)D^2 + 4TD) + 2DK], T = N+1; "
           "peak = 2n^3 / time of an n x n fp32 matmul")


def vit_flops(cfg: ViTConfig, train: bool = True) -> int:
    """Model FLOPs per image of a forward (x3 for forward + backward) pass, by the formula above."""
    n, d, t = cfg.num_patches, cfg.dim, cfg.num_patches + 1
    patch = 2 * n * cfg.patch_size ** 2 * cfg.in_channels * d
    layers = cfg.depth * t * ((8 + 4 * cfg.mlp_ratio) * d * d + 4 * t * d)
    head = 2 * d * cfg.num_classes
    forward = patch + layers + head
    return int(3 * forward if train else forward)


def counted_flops(model, batch: int, cfg: ViTConfig, dev) -> int:
    """FLOPs of one forward + backward as counted by torch, per image."""
    x = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=dev)
    with flop_counter() as counter:  # attention products included on a CPU too
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() // batch


def run(repeats: int = 5, save: bool = True, quick: bool = False) -> list[dict]:
    dev = runtime.device()
    policy = runtime.precision_for(dev)
    if dev.type == "cuda":  # the item-6 setting: a width-384 CIFAR ViT, batch 1024, the GPU's precision
        models, size = [(config_of("vit_cifar_patch4_32", dim=384, num_heads=6, drop_path=0.0), 1024)], 8192
    else:  # the gpu-profile CIFAR ViT (the target), and the cpu-profile Fashion-MNIST ViT of chapter 03
        cpu = recipe("vit", "cpu")
        models, size = [(config_of(recipe("vit", "gpu").model), 128), (config_of(cpu.model), cpu.batch_size)], 2048
    if quick:
        models, size = [(cfg, max(2, batch // 8)) for cfg, batch in models], size // 2
    dtype = policy.dtype or torch.float32
    dname = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    a = torch.randn(size, size, device=dev, dtype=dtype)
    b = torch.randn(size, size, device=dev, dtype=dtype)
    rows, results = [], []
    for cfg, batch in models:
        torch.manual_seed(0)
        model = ViT(cfg).to(dev)
        per_image = vit_flops(cfg)
        per_image_counted = counted_flops(model, 2, cfg, dev)
        step = make_step(model, batch, cfg, dev)
        times = interleaved({"step": step, "matmul": lambda: a @ b}, repeats, dev, warmup=2)
        peak = 2 * size ** 3 / median(times["matmul"])
        best_peak = 2 * size ** 3 / min(times["matmul"])
        achieved = per_image * batch / median(times["step"])
        rows.append([f"{cfg.dim}w {cfg.depth}L {cfg.num_heads}h r{cfg.mlp_ratio:g} {cfg.image_size}px/{cfg.patch_size}"
                     f"{' drop-path ' + str(cfg.drop_path) if cfg.drop_path else ''}",
                     batch, f"{per_image / 1e9:.3f} ({per_image_counted / 1e9:.3f})",
                     f"{1e3 * median(times['step']):.0f} ({spread(times['step'])})", f"{achieved / 1e9:.1f}",
                     f"{peak / 1e9:.1f} (best {best_peak / 1e9:.1f})", f"{100 * achieved / peak:.0f}%"])
        results.append(dict(dim=cfg.dim, batch=batch, achieved=achieved, peak=peak, fraction=achieved / peak,
                            flops_per_image=per_image, counted_per_image=per_image_counted))
    text = (f"### 5. Training step FLOP/s vs the measured {dname} matmul peak ({size}x{size}), "
            f"median of {repeats} interleaved repeats (the peak is re-measured next to each model)\n\n"
            f"Formula: {FORMULA}.\n\n"
            + table(["model", "batch", "GFLOP/image train (torch count)", "step ms", "achieved GFLOP/s",
                     f"{dname} matmul GFLOP/s", "of peak"], rows))
    report(text + "\n", save)
    return results


if __name__ == "__main__":
    print(header("utilisation"))
    run(repeats=3, save=False, quick=True)
