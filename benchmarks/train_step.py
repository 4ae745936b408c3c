"""Item 1: images per second of a training step (forward + backward + AdamW step), the course ViT
against timm's ``VisionTransformer`` built with the same configuration."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from vitcourse import runtime
from vitcourse.models.vit import ViT, config_of

from .common import interleaved, median, report, spread, table, header

# (name, registered course config, batch on the CPU, batch on a GPU)
CONFIGS = [
    ("small ViT 32px/4 (vit_cifar_patch4_32)", "vit_cifar_patch4_32", 128, 1024),
    ("ViT-Ti/16 224px (vit_tiny_patch16_224)", "vit_tiny_patch16_224", 16, 256),
]


def timm_twin(cfg):
    """timm's VisionTransformer with every field of our ViTConfig (class-token pooling, LN eps 1e-6)."""
    from timm.models.vision_transformer import VisionTransformer
    return VisionTransformer(
        img_size=cfg.image_size, patch_size=cfg.patch_size, in_chans=cfg.in_channels,
        num_classes=cfg.num_classes, embed_dim=cfg.dim, depth=cfg.depth, num_heads=cfg.num_heads,
        mlp_ratio=cfg.mlp_ratio, drop_rate=cfg.dropout, proj_drop_rate=cfg.dropout,
        attn_drop_rate=cfg.attn_dropout, drop_path_rate=cfg.drop_path, global_pool="token")


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def make_step(model, batch: int, cfg, dev, steps: int = 1):
    """A closure running ``steps`` training steps on one fixed random batch (data loading excluded)."""
    model.to(dev).train()
    policy = runtime.precision_for(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, generator=g).to(dev)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=g).to(dev)

    def step():
        for _ in range(steps):
            with policy.autocast(dev.type):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return step


def compiled(model, dev, make):
    """Compile ``model`` and time the first step (the compilation) separately."""
    model.compile()
    step = make(model)
    t0 = time.perf_counter()
    step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return step, time.perf_counter() - t0


def run(repeats: int = 9, save: bool = True, quick: bool = False) -> list[dict]:
    dev = runtime.device()
    # torch.compile is measured where it pays off and compiles in reasonable time: on a GPU.
    modes = [False, True] if dev.type == "cuda" else [False]
    rows, results, notes = [], [], []
    for label, name, cpu_batch, gpu_batch in CONFIGS:
        batch = gpu_batch if dev.type == "cuda" else cpu_batch
        if quick:
            batch = max(2, batch // 8)
        cfg = config_of(name)
        for compile_on in modes:
            torch.manual_seed(0)
            ours, theirs = ViT(cfg), timm_twin(cfg)
            n_ours, n_timm = num_params(ours), num_params(theirs)
            if n_ours != n_timm:
                raise AssertionError(f"{label}: parameter counts differ, ours {n_ours:,} vs timm {n_timm:,}; "
                                     "the two models are not the same configuration")
            make = lambda m: make_step(m, batch, cfg, dev)  # noqa: E731
            if compile_on:
                step_ours, c_ours = compiled(ours, dev, make)
                step_timm, c_timm = compiled(theirs, dev, make)
                notes.append(f"{label}: compile time ours {c_ours:.1f} s, timm {c_timm:.1f} s")
            else:
                step_ours, step_timm = make(ours), make(theirs)
            times = interleaved({"ours": step_ours, "timm": step_timm}, repeats, dev, warmup=2)
            ips_ours, ips_timm = batch / median(times["ours"]), batch / median(times["timm"])
            rows.append([label + (" compiled" if compile_on else ""), batch, f"{n_ours:,}", f"{n_timm:,}",
                         f"{ips_ours:.1f} ({spread(times['ours'])})", f"{ips_timm:.1f} ({spread(times['timm'])})",
                         f"{ips_ours / ips_timm:.2f}"])
            results.append(dict(config=name, compile=compile_on, batch=batch, ours=ips_ours, timm=ips_timm,
                                step_s=median(times["ours"]), params=n_ours))
    text = ("### 1. Training step (forward + backward + AdamW), images/s, median of "
            f"{repeats} interleaved repeats\n\n"
            + table(["config", "batch", "params ours", "params timm", "ours img/s", "timm img/s",
                     "ours/timm"], rows))
    if notes:
        text += "\n\n" + "\n".join(f"- {n}" for n in notes)
    report(text + "\n", save)
    return results


if __name__ == "__main__":
    print(header("train_step"))
    run(repeats=3, save=False, quick=True)
