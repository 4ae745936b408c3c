# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · ViT against ResNet: data, augmentation, hybrids and transfer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/04_vit_vs_resnet.ipynb)
#
# Chapter 03 ended with a warning: a ViT builds in almost none of a CNN's assumptions about images
# (locality, the 2-D neighbourhood, translation equivariance), so it has to learn them from data. The
# ViT paper measured what that costs (Dosovitskiy et al. 2021, figures 3-4; source 001): pre-trained on
# ImageNet-1k (1.3M images) ViTs lose to ResNets (BiT); on ImageNet-21k (14M) they tie; only on
# JFT-300M does ViT-H/14 win. Two ways out followed: **augmentation and regularisation** (AugReg,
# Steiner et al. 2021: trained long enough on ImageNet-1k, they are worth about ten times the data) and
# **hybrids** that cut the tokens from a CNN feature map. And once pre-trained on a lot of data, a ViT
# **transfers** well to small data sets (source 003's table: ViT-H/14 pre-trained on JFT-300M reaches
# 99.5% on CIFAR-10 after fine-tuning).
#
# **Learning goals**
# 1. Build the hybrid tokenizer: a ResNet's early stages turn the image into a feature map whose
#    positions ("1x1 patches") become the tokens.
# 2. Run a data-scale study whose points are trained near convergence: more steps for more data, the
#    stopping step chosen on a validation split held out from the training images, never on the test
#    split; read accuracy against data on a log axis, with the learning curves that show each run got there.
# 3. Put augmentation and regularisation where they can help (a ViT that overfits), and see why they
#    need a long schedule to pay off.
# 4. Compare a pre-trained and a from-scratch start fairly: the same images, the same learning-rate
#    grid, the choice made on validation images; and see the gain change with the labelled-set size.
#
# Claims to reproduce (**C4**): *ResNet beats ViT with little data and the gap shrinks as data grows;
# augmentation + regularisation lift ViT; pre-trained ViT transfers far above training from scratch.*

# %%
# Setup, the same cell in every chapter. On Colab, it installs the course package from the course
# repository at this notebook's branch (only when it is not installed yet; Colab's own torch,
# torchvision, numpy and ipywidgets are kept), then vitcourse.setup() mounts Google Drive so that runs
# survive a runtime reset. Elsewhere it installs and mounts nothing.
COURSE_REPO, COURSE_BRANCH = "https://github.com/vitcourse/vitcourse", "main"
try:
    import vitcourse
except ImportError:
    import subprocess, sys
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{COURSE_REPO}@{COURSE_BRANCH}"],
                   check=True)
    import vitcourse
vitcourse.setup()

# %%
# This chapter in the gpu profile, as `make rehearsal` planned it (the plan ships with the package):
# its time on a T4 and on the GPU found here, and its peak memory.
from vitcourse.plan import projected

print(projected("04_vit_vs_resnet"))

# %%
import copy

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

from vitcourse import analysis, budget, profile
from vitcourse import data as D
from vitcourse.claims import Claims, paired, regime, rise_noise
from vitcourse.models import create_model
from vitcourse.models.hybrid import ResNetTokenizer
from vitcourse.models.resnet import resnet_body
from vitcourse.models.vit import config_of
from vitcourse.recipes import recipe, train_for_steps
from vitcourse.study import Study, run_dir
from vitcourse.train import evaluate
from vitcourse.transfer import pretrained_vit, split_classes

DEVICE = vitcourse.device()
DATASET = D.dataset_for_profile()                        # synthetic | fashion_mnist | cifar10
SEEDS = budget(smoke=(0, 1), cpu=(0, 1, 2), gpu=(0, 1, 2))   # paired seeds: a seed fixes the subset, init and batches
VAL_IMAGES = budget(smoke=100, cpu=1000, gpu=5000)      # held out from the training split, for every choice made
N_TRAIN_EVAL = budget(smoke=100, cpu=1000, gpu=5000)    # training images scored (clean) for the train accuracy
EVALS = budget(smoke=2, cpu=8, gpu=10)                   # points of every learning curve
# C4a, the data-scale study: (training images, steps). More steps for more data; every run stops at its
# best validation point (early stopping, as the ViT paper's figure 4).
SCALE = budget(smoke=((60, 4), (240, 4)), cpu=((250, 704), (1000, 1000), (4000, 1400)),
               gpu=((500, 2000), (5000, 5000), (45000, 10000)))
SCALE_MODELS = budget(smoke=("resnet", "vit", "hybrid"), cpu=("resnet", "vit"), gpu=("resnet", "vit", "hybrid"))
SCALE_BATCH = budget(smoke=32, cpu=32, gpu=128)
SCALE_AUGMENT = budget(smoke={}, cpu=dict(crop_padding=1), gpu=dict(crop_padding=4, flip=True))  # the same for all
# C4b, the AugReg study: the ViT on a small set, three settings, a short and a long schedule.
AUGREG_IMAGES = budget(smoke=120, cpu=500, gpu=5000)
AUGREG_STEPS = budget(smoke=(4, 8), cpu=(240, 960), gpu=(1500, 6000))
AUGREG_BATCH = budget(smoke=32, cpu=32, gpu=128)
# C4c, transfer: pre-train on five classes, fine-tune on a few labelled images per class of the other five.
SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 4, 5, 8), (2, 3, 6, 7, 9)
PRETRAIN_STEPS = budget(smoke=4, cpu=1000, gpu=5000)
PER_CLASS = budget(smoke=(4, 12), cpu=(10, 50), gpu=(10, 100))     # labelled images per class of the new task
FINETUNE_STEPS = budget(smoke=4, cpu=200, gpu=300)
FINETUNE_BATCH = budget(smoke=16, cpu=32, gpu=32)    # at most the smallest labelled set (5 x PER_CLASS[0])
LR_GRID = (3e-4, 1e-3, 3e-3)                              # the same grid for both starting points
# Thresholds and regimes of the claims, fixed before any run (each section says where it comes from).
PLATEAU = 0.005         # near convergence: the (validation) curve rose less than 0.5 point over its last 20% of steps
GAP_SMALL = 0.02        # C4a: ResNet ahead of ViT by at least 2 points on the smallest set ...
GAP_SHRINK = 0.5        # ... and on the largest set by at most half of the smallest set's gap
OVERFIT = 0.10          # C4b's regime: with nothing, clean train accuracy at least 10 points above test
AUGREG_GAIN = 0.01      # C4b: augmentation + regularisation lift the ViT by at least 1 point (long schedule)
TRANSFER_GAIN = 0.05    # C4c: fine-tuned beats from scratch by at least 5 points on the fewest labels
SOURCE_ACC = budget(smoke=0.0, cpu=0.85, gpu=0.80)       # C4c's regime: the pre-trained model knows its own classes
print(f"profile {profile()}, data {DATASET}, seeds {SEEDS}")

# %% [markdown]
# ## 1. The data
#
# The whole split sits on the device (`DeviceLoader`). Every choice this chapter makes (the step at
# which a run stops, a learning rate) is made on a **validation split held out from the training
# images** (`data.holdout`, stratified); the test split is only ever scored. The training sets of the
# studies are **stratified** subsets of what is left: the same share of every class, drawn with the
# run's seed, so that with one seed the smaller sets are inside the larger ones.

# %%
train_data, test_data = D.load(DATASET, "train"), D.load(DATASET, "test")
pool, val_data = D.holdout(train_data, VAL_IMAGES, seed=1234)   # pool: what the studies train on
C, H, W = train_data.shape
print(train_data, "\n", test_data)
print(f"validation split: {len(val_data):,} images held out of the {len(train_data):,} training images; "
      f"{len(pool):,} left to train on")
for n, _ in SCALE:
    sub = D.subset(pool, n, seed=SEEDS[0])
    counts = torch.bincount(sub.labels, minlength=len(sub.classes))
    print(f"{n:6,d} training images: per class {counts.min().item()}-{counts.max().item()}")
test_loader = D.DeviceLoader(test_data, 1000, shuffle=False, device=DEVICE)
val_loader = D.DeviceLoader(val_data, 1000, shuffle=False, device=DEVICE)

# %% [markdown]
# ## 2. The hybrid: tokens from a CNN feature map
#
# The ViT paper's hybrid (section 3.1) keeps the Transformer and changes only where the tokens come
# from: "the input sequence can be formed from feature maps of a CNN ... the patches can have spatial
# size 1x1". Our CNN is chapter 00's ResNet: a 3x3 stem and three stages (widths 16, 32, 64), the
# second and third halving the resolution. On a 28-px image that is a 64 x 7 x 7 feature map: 49
# positions, 49 tokens, each a 64-vector projected to the width $D$. In a few lines:

# %%
torch.manual_seed(0)
D_MODEL = config_of(recipe("hybrid").model).dim                             # the width of the hybrid's ViT
stem, stages = resnet_body(blocks=1, in_channels=C, widths=(16, 32, 64))     # chapter 00's first stages
proj = torch.nn.Conv2d(64, D_MODEL, kernel_size=1)                          # 1x1 patches -> width D
x = test_loader.images[:4].float() / 255
feature_map = stages(stem(x))                                               # (B, 64, H/4, W/4)
tokens = rearrange(proj(feature_map), "b d h w -> b (h w) d")               # (B, N, D)
print("image", tuple(x.shape), "-> feature map", tuple(feature_map.shape), "-> tokens", tuple(tokens.shape))
print(f"the 1x1 projection is a learned {D_MODEL}x64 matrix applied at every position"
      + (": D equals the 64 channels here, so it keeps the shape and only mixes the channels" if D_MODEL == 64 else ""))
# What one token sees: the input pixels its value depends on (where the gradient of one token is not zero).
stem.eval(), stages.eval()      # batch norm with fixed statistics: in training mode it mixes the whole batch
probe_image = x[:1].clone().requires_grad_(True)
centre = (H // 4 // 2) * (W // 4) + (W // 4 // 2)                           # the token in the middle of the grid
rearrange(proj(stages(stem(probe_image))), "b d h w -> b (h w) d")[0, centre].sum().backward()
seen = (probe_image.grad[0].abs().sum(0) > 0).nonzero()
rf = (seen.max(0).values - seen.min(0).values + 1).tolist()
print(f"the centre token depends on a {rf[0]}x{rf[1]}-pixel region of the {H}x{W} image (a ViT patch token: 4x4)")

# The package's tokenizer is the same function: load these weights into it and compare.
tokenizer = ResNetTokenizer(C, D_MODEL, patch_size=4)      # patch_size: image pixels per token side (the stages' stride)
tokenizer.load_state_dict({**{f"stem.{k}": v for k, v in stem.state_dict().items()},
                           **{f"stages.{k}": v for k, v in stages.state_dict().items()},
                           **{f"proj.{k}": v for k, v in proj.state_dict().items()}})
for module in (stem, stages, tokenizer):
    module.eval()  # batch norm with its running statistics, the same in both
with torch.no_grad():
    ours = rearrange(proj(stages(stem(x))), "b d h w -> b (h w) d")
    assert torch.allclose(tokenizer(x), ours, atol=1e-6)
assert tokens.shape == (4, (H // 4) * (W // 4), D_MODEL)

# %% [markdown]
# Each token now describes a 4x4-pixel cell *and its surroundings*: after the stem and one basic block (two 3x3 convolutions)
# per stage, one position of the feature map sees far more than its cell. That is the inductive bias
# of chapter 00 (locality, translation equivariance) put back under the Transformer.

# %%
fig, axes = plt.subplots(1, 5, figsize=(10, 2.3))
axes[0].imshow(analysis.to_display(test_data.images[0]), cmap="gray" if C == 1 else None)
axes[0].set(title="input", xticks=[], yticks=[])
for k, ax in enumerate(axes[1:]):
    ax.imshow(feature_map[0, k].detach(), cmap="magma")
    ax.set(title=f"channel {k}", xticks=[], yticks=[])
fig.suptitle(f"untrained ResNet stages: a {H}x{W} image becomes a {feature_map.shape[-2]}x"
             f"{feature_map.shape[-1]} grid of 64-channel tokens")
plt.show()

# %% [markdown]
# Each small map is one of the 64 channels of the feature map, one square per token. Untrained, the
# channels are random local filters, and at 7x7 the garment is hard to make out: what matters is that
# each square is computed from a whole neighbourhood of the image (the region printed above), not
# from its own 4x4 cell alone, as a ViT's patch token is. Registered as a tokenizer, the hybrid is a `ViTConfig(tokenizer="resnet")`, with the same
# Transformer as chapter 03's ViT (`vitcourse.recipes`: `recipe("hybrid")`).
#
# ## 3. The data-scale study (C4a)
#
# The models of chapters 00 and 03, the **ResNet** and the **ViT** (and, in the smoke and gpu profiles,
# the **hybrid**; on 2 CPU cores it costs twice the ViT per step, so the cpu profile leaves it out),
# each trained from scratch on training sets of growing size.
#
# **Near convergence, at every size.** A fair data-scale study compares models that have learned what
# their data can teach them, not models cut off by the step budget: a run of a fixed number of steps
# sees its small set many times and its large set barely once, and then measures steps, not data. So
# the larger sets get more steps (SCALE in the setup cell), and every run keeps the weights of its
# best point on the validation split (**early stopping**, as the ViT paper's figure 4: "we use
# early-stopping, and report the best validation accuracy achieved during training"). The validation
# curve is measured EVALS times during training and kept in the run's record.
#
# **Like with like.** The same batches (a seed fixes the subset, the initial weights and the order and
# augmentation of the batches, for every model), the same augmentation (SCALE_AUGMENT: a random
# shift of up to 1 pixel in the cpu profile), weight decay 0.05 and label smoothing 0.1 for all. The
# learning rate is each model's own, from its chapter's recipe (as the paper tunes each model's), and
# the models differ in size: both are printed.
#
# **The regime** (fixed before the run): each model at each size near convergence, its validation
# curve (mean over seeds) risen less than PLATEAU = 0.5 point over its last 20% of steps.
#
# **The claim** (C4a), judged over the paired seeds: the ResNet ahead of the ViT on the smallest set by
# at least GAP_SMALL = 2 points (on ImageNet-1k the paper's gap is several points), and the gap on the
# largest set at most GAP_SHRINK = half of that, i.e. `GAP_SHRINK * gap_small - gap_large >= 0`
# with its 95% interval above zero. In words: on the largest set the ResNet's lead is at most half of
# its lead on the smallest set, by more than the seeds' noise.
#
# **How a paired difference is judged** (`vitcourse.claims.paired`, used in every section): the
# difference of the two models seed by seed, its mean, and the mean's 95% interval, mean +- t x
# (standard error), with Student's t for n - 1 degrees of freedom. With 3 seeds t = 4.30, so a
# difference must be more than 4.3 standard errors from zero to count as real ("3.6 standard errors,
# within the noise" is no contradiction). `judge(T)` then says "gain of T shown" (mean at least T and
# the interval above zero), "below the threshold" (even the interval's upper end is below T), or
# "inconclusive" (the interval reaches T, and the seeds cannot show it).
#
# Runs are stored by `vitcourse.study.Study`, one JSON record per finished run, named from its
# config: re-running the notebook reads them back instead of training again, and an interrupted run
# resumes from its checkpoint.

# %%
def study_recipe(config: dict):
    """The model's recipe with the run's augmentation, model arguments and fit settings."""
    r = recipe(config["model"])
    return r.replace(augment=config["augment"], model_args={**r.model_args, **config.get("model_args", {})})


def clean_accuracy(model, data) -> float:
    """Accuracy on (up to N_TRAIN_EVAL of) the run's own training images, without augmentation."""
    seen = D.subset(data, min(N_TRAIN_EVAL, len(data)), seed=1)
    return evaluate(model, D.DeviceLoader(seen, 1000, shuffle=False, device=DEVICE))["acc"]


def train_run(config: dict, study: Study) -> dict:
    """One run: the model on ``images`` stratified images of the pool for ``steps`` steps, its validation
    curve kept; with ``early_stop``, the weights of its best validation point are the ones scored."""
    r, data = study_recipe(config), D.subset(pool, config["images"], seed=config["seed"])
    vitcourse.seed_everything(config["seed"])
    model = r.build(data)
    checkpoint = study.checkpoint(config)
    history = train_for_steps(r, model, data, steps=config["steps"], seed=config["seed"], curve=val_loader,
                              curve_name="val", evals=config["evals"], batch_size=config["batch"],
                              checkpoint=checkpoint, best=checkpoint.with_name("best.pt") if config["early_stop"] else None,
                              device=DEVICE, **config.get("fit", {}))
    chosen = next((e for e in history.epochs if e.get("best")), history.epochs[-1])
    return {"metrics": {"test_acc": evaluate(model, test_loader)["acc"], "train_acc": clean_accuracy(model, data),
                        "val_acc": chosen["val_acc"], "step": chosen["step"], "train_images": len(data),
                        "params": sum(p.numel() for p in model.parameters())},
            "history": history.epochs}


def check_window(ax, steps):
    """Shade the steps the convergence check looks at: from the last evaluation at or before 80% of the
    steps to the end (claims.late_rise)."""
    start = max(s for s in steps if s <= 0.8 * steps[-1]) if len(steps) > 1 else steps[-1]
    ax.axvspan(start, steps[-1], color="grey", alpha=0.15)


def size_axis(ax, sizes, label="training images (log scale)"):
    """A log x axis whose ticks are the sizes themselves."""
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel(label)


def run_all(study: Study, configs: list[dict]) -> list[dict]:
    """Every config, finished runs read back from disk; one progress bar for the whole grid. A finished
    run's checkpoint is deleted once its record is written (nothing reads its weights again)."""
    return [study.run(c, lambda c: train_run(c, study), keep_checkpoint=False) for c in tqdm(configs, desc=study.name)]


def scale_config(model: str, images: int, steps: int, seed: int) -> dict:
    return {"model": model, "recipe": recipe(model).to_dict(), "data": DATASET, "val_images": VAL_IMAGES,
            "images": images, "steps": steps, "batch": SCALE_BATCH, "evals": EVALS, "augment": SCALE_AUGMENT,
            "early_stop": True, "seed": seed}


scale_study = Study("04_data_scale")
grid = [scale_config(m, n, steps, s) for n, steps in SCALE for m in SCALE_MODELS for s in SEEDS]
scale = {(c["model"], c["images"], c["seed"]): rec for c, rec in zip(grid, run_all(scale_study, grid))}
sizes = [n for n, _ in SCALE]
acc = {m: np.array([[scale[m, n, s]["metrics"]["test_acc"] for s in SEEDS] for n in sizes]) for m in SCALE_MODELS}
fits = {m: np.array([[scale[m, n, s]["metrics"]["train_acc"] for s in SEEDS] for n in sizes]) for m in SCALE_MODELS}
for m in SCALE_MODELS:
    r = recipe(m)
    shape = ""
    if m != "resnet":  # a ViT config: its width, depth, heads and tokens
        cfg = config_of(r.model, image_size=H, in_channels=C)
        shape = f", width {cfg.dim}, depth {cfg.depth}, {cfg.num_heads} heads, {cfg.num_patches} tokens + a class token"
    print(f"{m:6s} {r.model:22s} {scale[m, sizes[0], SEEDS[0]]['metrics']['params']:8,d} parameters, lr {r.lr:g}{shape}")
print(f"{'images':>7s} {'steps':>6s} {'passes':>7s}  " + "  ".join(f"{m + ' test':>12s} {m + ' train':>12s}"
                                                             for m in SCALE_MODELS))
for i, (n, steps) in enumerate(SCALE):
    print(f"{n:7,d} {steps:6,d} {steps * SCALE_BATCH / n:7.1f}  " + "  ".join(
        f"{acc[m][i].mean():12.4f} {fits[m][i].mean():12.4f}" for m in SCALE_MODELS))

# %%
colors = {"resnet": "tab:green", "vit": "tab:blue", "hybrid": "tab:orange"}
fig, axes = plt.subplots(1, len(SCALE), figsize=(4 * len(SCALE), 3.4), sharey=True, squeeze=False)
for ax, (n, steps) in zip(axes[0], SCALE):
    for m in SCALE_MODELS:
        for s in SEEDS:
            h = scale[m, n, s]["history"]
            ax.plot([e["step"] for e in h], [e["val_acc"] for e in h], color=colors[m], alpha=0.7,
                    label=m if s == SEEDS[0] else None)
            best = next(e for e in h if e["best"])
            ax.plot(best["step"], best["val_acc"], "o", color=colors[m], ms=4)
    check_window(ax, [e["step"] for e in scale[SCALE_MODELS[0], n, SEEDS[0]]["history"]])
    ax.set(title=f"{n:,} images, {steps:,} steps", xlabel="step")
axes[0, 0].set_ylabel("validation accuracy")
axes[0, 0].legend(fontsize=8)
fig.suptitle("learning curves of the data-scale runs (one line per seed; dot: the early-stopping point; grey: the check's window)")
fig.tight_layout()
plt.show()
steps_of = {n: [e["step"] for e in scale[SCALE_MODELS[0], n, SEEDS[0]]["history"]] for n in sizes}
mean_curve = {f"{m} on {n:,}": np.mean([[e["val_acc"] for e in scale[m, n, s]["history"]] for s in SEEDS], axis=0)
              for n in sizes for m in SCALE_MODELS}
c4a_regime = {n: regime(steps_of[n], {k: v for k, v in mean_curve.items() if k.endswith(f" on {n:,}")}, PLATEAU,
                       measure="validation accuracy") for n in sizes}
for n in sizes:
    print(c4a_regime[n].report(f"C4a on {n:,} images"))
c4a_reached = all(r.reached for r in c4a_regime.values())
for n in sizes:  # the check's own noise (vitcourse.claims.rise_noise): a second look at a failed check
    noise = {k: rise_noise(float(v[-1]), VAL_IMAGES, len(SEEDS)) for k, v in mean_curve.items() if k.endswith(f" on {n:,}")}
    print(f"{n:,} images: " + "; ".join(f"{k.split(' on ')[0]} rose {c4a_regime[n].rise[k]:+.4f}, "
                                         f"{c4a_regime[n].rise[k] / max(v, 1e-9):.1f} times its noise (+-{v:.4f})"
                                         for k, v in noise.items()))

# %% [markdown]
# One panel per training-set size, one line per model and seed: the validation accuracy as training goes,
# the dot where the run stopped (its best point), the grey band the window of the convergence check
# (from the last evaluation at or before 80% of the steps to the end). A run near
# convergence is flat in the grey band; the printed lines check that for every model and size.
#
# The check has noise of its own: each point of a curve is an accuracy on VAL_IMAGES images, and the
# rise is the difference of two points (averaged over the seeds). The last printed lines put each rise
# next to that noise: a rise of one or two noise widths cannot be told from a flat curve, a rise of
# several is a curve still climbing. The threshold stays PLATEAU either way: this only says which
# failures are clear. (A curve that falls in the grey band counts as converged: it has passed its
# peak, and early stopping keeps the peak's weights.)
#
# Now the claim. Test accuracy against the number of training images, and the gap, with its 95%
# interval over the paired seeds at every size:

# %%
gap = {n: paired(acc["resnet"][i], acc["vit"][i]) for i, n in enumerate(sizes)}
shrink = paired(GAP_SHRINK * (acc["resnet"][0] - acc["vit"][0]), acc["resnet"][-1] - acc["vit"][-1])
fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(11, 4))
for m in SCALE_MODELS:
    ax.errorbar(sizes, acc[m].mean(1), yerr=acc[m].std(1), marker="o", capsize=3, color=colors[m],
                label=f"{m} ({recipe(m).model})")
size_axis(ax, sizes)
ax.set(ylabel="test accuracy (early-stopped)",
       title=f"{DATASET}: accuracy against data (mean; bars: sd of {len(SEEDS)} seeds)")
ax.legend(fontsize=8)
ax_gap.errorbar(sizes, [g.mean for g in gap.values()], yerr=[g.half_width if np.isfinite(g.half_width) else 0
                                                             for g in gap.values()],
                marker="o", capsize=3, label="ResNet - ViT (95% interval)")
if "hybrid" in SCALE_MODELS:
    ax_gap.plot(sizes, (acc["resnet"] - acc["hybrid"]).mean(1), marker="s", color=colors["hybrid"],
                label="ResNet - hybrid (mean)")
ax_gap.axhline(0, color="gray", lw=1)
ax_gap.axhline(GAP_SMALL, color="tab:red", lw=1, ls="--", label=f"GAP_SMALL = {GAP_SMALL} (smallest set)")
ax_gap.plot([sizes[-1]], [GAP_SHRINK * gap[sizes[0]].mean], "v", color="tab:red", ms=9,
            label=f"C4a's ceiling at the largest set: {GAP_SHRINK} x the smallest set's gap")
size_axis(ax_gap, sizes)
ax_gap.set(ylabel="test accuracy difference", title="how far the ResNet is ahead (above 0: ResNet better)")
ax_gap.legend(fontsize=8)
fig.tight_layout()
plt.show()
for n in sizes:
    print(f"ResNet - ViT on {n:6,d} images: {gap[n].describe()}")
print(f"{GAP_SHRINK} x gap on {sizes[0]:,} - gap on {sizes[-1]:,}: {shrink.describe()}")
gap_verdict = gap[sizes[0]].judge(GAP_SMALL)
shrink_verdict = (shrink.judge(0.0).replace("a gain of 0.0", "a shrink to half").replace("gain of 0.0 shown", "shrink to half shown")
                  .replace("reaches 0.0 or above", "reaches zero"))   # in words: the large set's gap at most half
print(f"the gap on the smallest set: {gap_verdict}; its shrinking to at most {GAP_SHRINK} of it: {shrink_verdict}")
direction = "shrank" if gap[sizes[-1]].mean < gap[sizes[0]].mean else "did not shrink"
print(f"In mean, the gap {direction}: {gap[sizes[0]].mean:+.4f} on {sizes[0]:,} images, {gap[sizes[-1]].mean:+.4f} on "
      f"{sizes[-1]:,} (the ceiling was {GAP_SHRINK * gap[sizes[0]].mean:+.4f}).")

# %% [markdown]
# The left plot is in the spirit of the ViT paper's figure 4 (models trained on growing random subsets
# of one data set, with early stopping; the paper then scores few-shot transfer to ImageNet, we score
# the trained model on its own test split), at a scale of hundreds to thousands of images instead
# of millions; the right one is the gap it is about, with the interval the seeds give it and the
# ceiling C4a sets for the largest set (the red triangle). The printed lines are the claim's two measurements: the gap on the smallest set, and how
# much of it is left on the largest.
#
# **A second measurement: what limits each model.** The generalisation gap (accuracy on the model's
# own training images, clean, minus test accuracy), and the training accuracy itself. A model that
# fits its few training images and still generalises worse is short of data or of inductive bias; a
# model that does not even fit them is short of optimisation, and more data would not be what it needs.

# %%
fig, (ax, ax_fit) = plt.subplots(1, 2, figsize=(11, 3.8))
for m in SCALE_MODELS:
    ax.plot(sizes, (fits[m] - acc[m]).mean(1), marker="o", color=colors[m], label=m)
    ax_fit.plot(sizes, fits[m].mean(1), marker="^", color=colors[m], label=m)
size_axis(ax, sizes)
ax.set(ylabel="clean train accuracy - test accuracy", title="generalisation gap (early-stopped weights)")
size_axis(ax_fit, sizes)
ax_fit.set(ylabel="clean train accuracy", title="how well each model fits its own training images")
for a in (ax, ax_fit):
    a.legend(fontsize=8)
fig.tight_layout()
plt.show()
overfit = {m: (fits[m] - acc[m]).mean(1) for m in SCALE_MODELS}
for m in SCALE_MODELS:
    print(f"{m:6s} train - test: " + ", ".join(f"{g:+.3f} on {n:,}" for g, n in zip(overfit[m], sizes))
          + f"; train accuracy on the smallest set {fits[m][0].mean():.3f}")
more = "ResNet" if overfit["resnet"][0] > overfit["vit"][0] else "ViT"
print(f"On the smallest set the {more} has the larger generalisation gap "
      f"({overfit['resnet'][0]:+.3f} ResNet, {overfit['vit'][0]:+.3f} ViT).")
fit_vit, fit_resnet = fits["vit"][0].mean(), fits["resnet"][0].mean()
if fit_vit < fit_resnet - 0.05:
    print(f"The ViT fits even its {sizes[0]:,} training images less well than the ResNet ({fit_vit:.3f} against "
          f"{fit_resnet:.3f}, {SCALE[0][1] * SCALE_BATCH / sizes[0]:.0f} passes): on this step budget it is short of "
          f"optimisation before it is short of data, so its gap to the ResNet measures steps as much as data.")
else:
    print(f"Both models fit their {sizes[0]:,} training images ({fit_vit:.3f} ViT, {fit_resnet:.3f} ResNet): the ViT's "
          f"lower test accuracy there is what the missing inductive bias costs with little data.")

# %% [markdown]
# ## 4. The AugReg study: augmentation and regularisation where the ViT overfits (C4b)
#
# Steiner et al. (2021), "How to train your ViT?", source 001: *regularisation* = weight decay,
# stochastic depth (dropping whole residual branches at random, chapter 03's `drop_path`) and dropout
# in the MLP; *augmentation* = MixUp (blend two images and their labels) and RandAugment (two random
# image operations, torchvision's default magnitude 9 of 30; our loader draws the two operations once
# for each group of 16 images of a batch, which keeps it fast on the device). On ImageNet-1k (300 epochs) essentially any kind of AugReg helps, and the best model
# overall is a ViT. On the ten times larger ImageNet-21k, AugReg hurts on a 30-epoch schedule and helps
# on a 300-epoch one; the hybrids (R+Ti, R26, R50) gain less from it than the plain ViTs (seed 001).
# Augmentation makes every step harder to fit: it pays off only once the
# model would otherwise overfit, and only after enough steps to learn the harder task. (The cpu
# profile leaves the hybrid out of this study for time; exercise 3 puts it in.)
#
# So the study runs where that can happen: the ViT on AUGREG_IMAGES images, many passes, with
# * **nothing**: no augmentation at all (not even the recipe's 1-pixel shift), no weight decay, no
#   label smoothing, no stochastic depth, no dropout;
# * **light**: the course recipe's own (a random shift of 1 pixel, weight decay 0.05, label smoothing 0.1);
# * **heavy**: MixUp (alpha 0.2), RandAugment, random shifts of up to 2 pixels, weight decay 0.1, label
#   smoothing 0.1, stochastic depth 0.1 and MLP dropout 0.1 (in the spirit of AugReg's heavier
#   settings; its exact grid is larger);
#
# each with a **short** and a **long** schedule (AUGREG_STEPS), three paired seeds. Every run is scored
# with its last weights (AugReg's protocol; nothing is chosen), and keeps its validation curve.
#
# **The regime** (fixed before the run): with nothing, the ViT overfits: on the long schedule its clean
# training accuracy exceeds its validation accuracy (the last point of its curve, the same weights)
# by at least OVERFIT = 10 points, mean over seeds.
#
# **The claim** (C4b): on the long schedule, heavy beats nothing by at least AUGREG_GAIN = 1 point
# (paired seeds, 95% interval above zero). **The shape AugReg reports**: the gain of heavy over
# nothing larger on the long schedule than on the short one.

# %%
AUGREG = {
    "nothing": dict(augment={}, fit=dict(weight_decay=0.0, label_smoothing=0.0),
                    model_args=dict(drop_path=0.0, dropout=0.0)),
    "light": dict(augment=dict(crop_padding=1), fit=dict(weight_decay=0.05, label_smoothing=0.1),
                  model_args=dict(drop_path=0.0, dropout=0.0)),
    "heavy": dict(augment=dict(crop_padding=2, mixup_alpha=0.2, randaugment=True),
                  fit=dict(weight_decay=0.1, label_smoothing=0.1), model_args=dict(drop_path=0.1, dropout=0.1)),
}
SCHEDULES = dict(zip(("short", "long"), AUGREG_STEPS))


def augreg_config(setting: str, schedule: str, seed: int) -> dict:
    return {"model": "vit", "recipe": recipe("vit").to_dict(), "data": DATASET, "val_images": VAL_IMAGES,
            "images": AUGREG_IMAGES, "steps": SCHEDULES[schedule], "batch": AUGREG_BATCH, "evals": EVALS,
            "early_stop": False, "augreg": setting, **AUGREG[setting], "seed": seed}


augreg_study = Study("04_augreg")
augreg_grid = [augreg_config(a, sch, s) for sch in SCHEDULES for a in AUGREG for s in SEEDS]
augreg = {(c["augreg"], c["steps"], c["seed"]): rec for c, rec in zip(augreg_grid, run_all(augreg_study, augreg_grid))}
aug_acc = {(a, sch): [augreg[a, st, s]["metrics"]["test_acc"] for s in SEEDS] for a in AUGREG for sch, st in SCHEDULES.items()}
aug_fit = {(a, sch): [augreg[a, st, s]["metrics"]["train_acc"] for s in SEEDS] for a in AUGREG for sch, st in SCHEDULES.items()}
print(f"the ViT on {AUGREG_IMAGES:,} images, batch {AUGREG_BATCH}: " + ", ".join(
    f"{sch} {st:,} steps ({st * AUGREG_BATCH / AUGREG_IMAGES:.0f} passes)" for sch, st in SCHEDULES.items()))
print(f"{'setting':8s} {'schedule':8s} {'test':>7s} {'clean train':>11s} {'train - test':>12s}")
for sch in SCHEDULES:
    for a in AUGREG:
        t, f = np.mean(aug_acc[a, sch]), np.mean(aug_fit[a, sch])
        print(f"{a:8s} {sch:8s} {t:7.4f} {f:11.4f} {f - t:+12.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
for ax, (sch, st) in zip(axes, SCHEDULES.items()):
    for a, color in zip(AUGREG, ("tab:gray", "tab:blue", "tab:purple")):
        for s in SEEDS:
            h = augreg[a, st, s]["history"]
            ax.plot([e["step"] for e in h], [e["val_acc"] for e in h], color=color, alpha=0.7,
                    label=a if s == SEEDS[0] else None)
    check_window(ax, [e["step"] for e in augreg["nothing", st, SEEDS[0]]["history"]])
    ax.set(title=f"{sch} schedule: {st:,} steps (grey: the check's window)", xlabel="step")
axes[0].set_ylabel("validation accuracy")
axes[0].legend(fontsize=8)
fig.suptitle(f"the ViT on {AUGREG_IMAGES:,} images: nothing, light and heavy (one line per seed)")
fig.tight_layout()
plt.show()
long_steps = [e["step"] for e in augreg["nothing", SCHEDULES["long"], SEEDS[0]]["history"]]
long_curve = {a: np.mean([[e["val_acc"] for e in augreg[a, SCHEDULES["long"], s]["history"]] for s in SEEDS], axis=0)
              for a in AUGREG}
val_gap = {a: np.mean(aug_fit[a, "long"]) - long_curve[a][-1] for a in AUGREG}
rises = regime(long_steps, long_curve, PLATEAU).rise   # the late rises (a rehearsal's one-point curves: nan)
for a in AUGREG:  # how far each setting got: a second measurement, not C4b's regime
    rise = rises[a]
    print(f"{a:8s} long schedule: validation accuracy rose {rise:+.4f} over its last 20% of steps "
          f"({rise / max(rise_noise(float(long_curve[a][-1]), VAL_IMAGES, len(SEEDS)), 1e-9):.1f} times its noise); "
          f"clean train - validation {val_gap[a]:+.4f}")
nothing_overfits = val_gap["nothing"] >= OVERFIT
print(f"C4b's regime, nothing overfits (clean train - validation >= {OVERFIT}): "
      f"{'yes' if nothing_overfits else 'NO'} ({val_gap['nothing']:+.4f})")

# %% [markdown]
# The validation curves of every run, on both schedules. With nothing, the curve rises fast and then
# stalls or falls as the model memorises its images; with heavy augmentation it starts slower. The printed lines say, for each setting on the long schedule, how much its curve still rose
# at the end (against the noise of the check) and how far it fits its training images better than
# new ones; the last line is C4b's pre-stated regime, which is about **nothing** alone.

# %%
gain = {(a, sch): paired(aug_acc[a, sch], aug_acc["nothing", sch]) for a in ("light", "heavy") for sch in SCHEDULES}
for (a, sch), g in gain.items():
    print(f"{a:5s} - nothing, {sch:5s} schedule: {g.describe()}")
heavy_verdict = gain["heavy", "long"].judge(AUGREG_GAIN)
grows = paired(np.array(aug_acc["heavy", "long"]) - aug_acc["nothing", "long"],
               np.array(aug_acc["heavy", "short"]) - aug_acc["nothing", "short"])
print(f"heavy - nothing on the long schedule: {heavy_verdict}")
print(f"(heavy - nothing) long - (heavy - nothing) short: {grows.describe()}")
print("clean training accuracy, long schedule: " + ", ".join(f"{a} {np.mean(aug_fit[a, 'long']):.3f}" for a in AUGREG))
light = gain["light", "long"]
print(f"light - nothing on the long schedule is positive on {sum(d > 0 for d in light.diffs)} of {light.n} seeds "
      f"(mean {light.mean:+.4f}, {'real' if light.real else 'within the noise'}); on the short schedule "
      f"{gain['light', 'short'].mean:+.4f}")

# %% [markdown]
# The first lines are each setting's paired gain over nothing on each schedule; then the claim's verdict,
# and how much the gain changed from the short to the long schedule (the shape AugReg reports: harm or
# little gain on a short schedule, gain on a long one). The last line is the second measurement: how
# well each setting fits its own training images. A heavy setting whose training accuracy is far below
# nothing's is either short of steps or regularised more than the model can carry: a curve still
# climbing in the grey band says the first, a flat one (rising about its noise) the second. The light
# line is the same comparison for the recipe's own light setting, which is not the claim's arm (it
# was not chosen before the run as the measurement of C4b) but shows the shape with less augmentation.
# One untested cause stays open: heavy's mix (MixUp, RandAugment, stochastic depth and dropout at once)
# may be too strong for a model this small on 28-px greyscale images at any schedule we can
# afford; exercise 4 takes it apart.

# %% [markdown]
# ## 5. Transfer: pre-trained against from scratch (C4c)
#
# Source 003's table (ViT paper, table 2): pre-trained on JFT-300M, ViT-H/14 reaches 99.50% on CIFAR-10
# and 94.55% on CIFAR-100, using 2.5k TPUv3-core-days against BiT-L's 9.9k. The table compares
# pre-trained models only: it has no row for a model trained from scratch on CIFAR, which is what the
# comparison below adds, at our scale.
#
# **The task.** Five classes never seen in pre-training, with PER_CLASS labelled images per class. The
# classes are mixed on both sides, so that neither side is one kind of object (printed below). Where
# the pre-trained model comes from:
#
# * **gpu profile with a network** (Colab): torchvision's `vit_b_32` with its public ImageNet-1k
#   weights, converted to our ViT (`vitcourse.models.convert.vit_from_torchvision`), fine-tuned at
#   224 px, against the same ViT-B/32 architecture trained from scratch on the same images.
# * **every other case** (cpu and smoke profiles, or no network): chapter 03's ViT pre-trained for
#   PRETRAIN_STEPS steps on the pool's images of the five source classes (several passes), against the
#   same ViT from scratch.
#
# **Like with like.** Both starting points train for the same FINETUNE_STEPS steps on the same labelled
# images, with the same augmentation, and each gets the **same learning-rate grid** LR_GRID: for every
# starting point and labelled-set size, the rate with the best validation accuracy (seed 0, on the
# validation split's images of the five classes) is the one used for all seeds. The pre-trained model's
# head is replaced by a new, zero-initialised one; everything else starts from its pre-trained weights.
#
# **The regime** (fixed before the run): the pre-trained model has learned its own task (offline: its
# validation accuracy on the five source classes at least SOURCE_ACC: 0.85 on Fashion-MNIST, where
# chapter 03's ViT reaches about 0.89 on all ten classes and five are easier; 0.80 on CIFAR), and every
# fine-tuning run is near convergence (its validation curve, mean over seeds, rose less than PLATEAU
# over its last 20% of steps).
#
# **The claim** (C4c): on the fewest labels, pre-trained beats from scratch by at least TRANSFER_GAIN =
# 5 points ("a wide margin"), paired seeds, 95% interval above zero. And the gain against the
# labelled-set size: the expected shape is a gain that is largest with the fewest labels, where a
# model from scratch has the least to learn features from.

# %%
if profile() == "gpu" and C == 3:  # torchvision's weights are for RGB images
    pretrained, why_offline = pretrained_vit("vit_b_32", num_classes=len(TARGET_CLASSES))
else:
    pretrained, why_offline = None, "the cpu and smoke profiles never download, nor does a 1-channel data set"
names = train_data.classes
print("source classes:", ", ".join(names[c] for c in SOURCE_CLASSES))
print("target classes:", ", ".join(names[c] for c in TARGET_CLASSES))
task_pool = split_classes(pool, TARGET_CLASSES)
task_val, task_test = split_classes(val_data, TARGET_CLASSES), split_classes(test_data, TARGET_CLASSES)
r_vit = recipe("vit")
source_acc, size = None, None
if pretrained is not None:
    print("pre-trained: torchvision vit_b_32 with ImageNet-1k weights, fine-tuned at 224 px")
    size, source = 224, "torchvision vit_b_32 ImageNet-1k"

    def new_model(init):
        if init == "pre-trained":
            return copy.deepcopy(pretrained)
        return create_model("vit_base_patch32_224", num_classes=len(TARGET_CLASSES), in_channels=C)
else:
    print(f"pre-trained offline ({why_offline})")
    source_data = split_classes(pool, SOURCE_CLASSES)
    source_test = split_classes(test_data, SOURCE_CLASSES)
    source = f"{DATASET} classes {SOURCE_CLASSES}, {PRETRAIN_STEPS} steps"
    vitcourse.seed_everything(SEEDS[0])
    source_net = r_vit.build(source_data)
    pre_run = run_dir("04_pretrain", {"recipe": r_vit.to_dict(), "data": DATASET, "classes": SOURCE_CLASSES,
                                      "val_images": VAL_IMAGES, "steps": PRETRAIN_STEPS, "evals": EVALS, "seed": SEEDS[0]})
    pre_history = train_for_steps(r_vit, source_net, source_data, steps=PRETRAIN_STEPS, seed=SEEDS[0], evals=EVALS,
                                  curve=D.DeviceLoader(split_classes(val_data, SOURCE_CLASSES), 1000, shuffle=False,
                                                       device=DEVICE), curve_name="val",
                                  checkpoint=pre_run / "checkpoint.pt", device=DEVICE)   # stored: a re-run loads it
    source_acc = pre_history.epochs[-1]["val_acc"]    # the validation split's images of the five source classes
    source_test_acc = evaluate(source_net, D.DeviceLoader(source_test, 1000, shuffle=False, device=DEVICE))["acc"]
    print(f"pre-trained for {PRETRAIN_STEPS:,} steps of {r_vit.batch_size} on {len(source_data):,} images "
          f"({PRETRAIN_STEPS * r_vit.batch_size / len(source_data):.1f} passes): validation accuracy on its own five "
          f"classes {source_acc:.4f} (regime: >= {SOURCE_ACC}); test accuracy {source_test_acc:.4f}")

    def new_model(init):
        if init == "pre-trained":  # the pre-trained network with a new, zero-initialised head
            return copy.deepcopy(source_net).reset_head(len(TARGET_CLASSES))
        return r_vit.build(task_pool)


def resized(loader):
    return D.Resized(loader, size) if size is not None else loader


EVAL_BATCH = 32 if size is not None else 250   # at 224 px each batch is resized in memory: keep them small
task_val_loader = resized(D.DeviceLoader(task_val, EVAL_BATCH, shuffle=False, device=DEVICE))
task_test_loader = resized(D.DeviceLoader(task_test, EVAL_BATCH, shuffle=False, device=DEVICE))


def transfer_run(config: dict) -> dict:
    """Fine-tune the pre-trained model, or train the same architecture from scratch, on the labelled set;
    ``probe``: train only a new head on the frozen body (pre-trained or random)."""
    labelled = D.subset(task_pool, config["per_class"] * len(TARGET_CLASSES), seed=config["seed"])
    vitcourse.seed_everything(config["seed"])
    model = new_model(config["init"])
    if config["probe"]:
        model.requires_grad_(False)
        model.reset_head(len(TARGET_CLASSES)).head.requires_grad_(True)
    history = train_for_steps(r_vit, model, labelled, steps=config["steps"], seed=config["seed"], evals=EVALS,
                              curve=task_val_loader, curve_name="val", batch_size=config["batch"], lr=config["lr"],
                              weight_decay=0.0 if config["probe"] else r_vit.weight_decay, resize=size,
                              checkpoint=transfer_study.checkpoint(config), device=DEVICE)
    return {"metrics": {"test_acc": evaluate(model, task_test_loader)["acc"], "val_acc": history.epochs[-1]["val_acc"]},
            "history": history.epochs}


def transfer_config(init, per_class, lr, seed, probe=False):
    return {"init": init, "source": source, "data": DATASET, "classes": TARGET_CLASSES, "val_images": VAL_IMAGES,
            "per_class": per_class, "steps": FINETUNE_STEPS, "batch": FINETUNE_BATCH, "lr": lr, "probe": probe,
            "recipe": r_vit.to_dict(), "seed": seed}


INITS = ("pre-trained", "from scratch")
transfer_study = Study("04_transfer")
search = [transfer_config(i, k, lr, SEEDS[0]) for k in PER_CLASS for i in INITS for lr in LR_GRID]
searched = {(c["init"], c["per_class"], c["lr"]): rec for c, rec in zip(search, [
    transfer_study.run(c, transfer_run, keep_checkpoint=False) for c in tqdm(search, desc="learning-rate grid")])}
best_lr = {(i, k): max(LR_GRID, key=lambda lr: searched[i, k, lr]["metrics"]["val_acc"]) for i in INITS for k in PER_CLASS}
finals = [transfer_config(i, k, best_lr[i, k], s) for k in PER_CLASS for i in INITS for s in SEEDS]
transfer = {(c["init"], c["per_class"], c["seed"]): transfer_study.run(c, transfer_run, keep_checkpoint=False)
            for c in tqdm(finals, desc="all seeds")}
t_acc = {(i, k): [transfer[i, k, s]["metrics"]["test_acc"] for s in SEEDS] for i in INITS for k in PER_CLASS}
print(f"{'start':13s} {'per class':>9s} " + " ".join(f"{'lr ' + format(lr, 'g'):>10s}" for lr in LR_GRID)
      + f" {'chosen':>7s} {'test (mean)':>11s}")
for k in PER_CLASS:
    for i in INITS:
        print(f"{i:13s} {k:9d} " + " ".join(f"{searched[i, k, lr]['metrics']['val_acc']:10.4f}" for lr in LR_GRID)
              + f" {best_lr[i, k]:7g} {np.mean(t_acc[i, k]):11.4f}")
print("(the lr columns are validation accuracies of seed 0; the test column is the mean over seeds at the chosen lr)")

# %%
transfer_gain = {k: paired(t_acc["pre-trained", k], t_acc["from scratch", k]) for k in PER_CLASS}
fine_curves = {f"{i}, {k}/class": np.mean([[e["val_acc"] for e in transfer[i, k, s]["history"]] for s in SEEDS], axis=0)
               for i in INITS for k in PER_CLASS}
c4c_regime = regime([e["step"] for e in transfer[INITS[0], PER_CLASS[0], SEEDS[0]]["history"]], fine_curves, PLATEAU,
                    measure="validation accuracy")
print(c4c_regime.report("C4c's fine-tuning"))
print("the check's own noise: " + "; ".join(
    f"{k} {c4c_regime.rise[k] / max(rise_noise(float(v[-1]), len(task_val), len(SEEDS)), 1e-9):.1f} times"
    for k, v in fine_curves.items()) + f" (validation curves on {len(task_val):,} images)")
source_ok = source_acc is None or source_acc >= SOURCE_ACC
print(f"the pre-trained model knows its own classes: "
      + ("ImageNet weights (not measured here)" if source_acc is None else
         f"{source_acc:.4f} (regime: >= {SOURCE_ACC}): {'yes' if source_ok else 'NO'}"))
c4c_reached = source_ok and c4c_regime.reached
for k in PER_CLASS:
    print(f"pre-trained - from scratch, {k} labelled images per class: {transfer_gain[k].describe()}")
transfer_verdict = transfer_gain[PER_CLASS[0]].judge(TRANSFER_GAIN)
print(f"on {PER_CLASS[0]} per class: {transfer_verdict}")
for k in PER_CLASS[1:]:
    print(f"on {k} per class: {transfer_gain[k].judge(TRANSFER_GAIN)} (not the claim's size; for the gain against size)")
fewest, most = transfer_gain[PER_CLASS[0]], transfer_gain[PER_CLASS[-1]]
apart = abs(fewest.mean - most.mean) > max(fewest.half_width, most.half_width)
print(f"the gain at {PER_CLASS[0]} and at {PER_CLASS[-1]} per class: {fewest.mean:+.4f} and {most.mean:+.4f}: "
      + (("larger with the fewest labels, the expected shape" if fewest.mean > most.mean else
          "smaller with the fewest labels, not the expected shape") if apart else
         "indistinguishable at these seeds (the difference is inside the intervals)"))
for i in INITS:
    for k in PER_CLASS:
        if best_lr[i, k] in (LR_GRID[0], LR_GRID[-1]):
            print(f"note: {i} at {k} per class chose {best_lr[i, k]:g}, the edge of the grid: a rate beyond it might do better")

fig, (ax, ax_gain) = plt.subplots(1, 2, figsize=(11, 3.8))
for i, color in zip(INITS, ("tab:green", "tab:gray")):
    ax.errorbar(PER_CLASS, [np.mean(t_acc[i, k]) for k in PER_CLASS], yerr=[np.std(t_acc[i, k]) for k in PER_CLASS],
                marker="o", capsize=3, color=color, label=i)
size_axis(ax, PER_CLASS, "labelled images per class (log scale)")
ax.set(ylabel="test accuracy on the new task", title=f"transfer: {FINETUNE_STEPS} steps, the lr chosen on validation")
ax.legend(fontsize=8)
ax_gain.errorbar(PER_CLASS, [transfer_gain[k].mean for k in PER_CLASS],
                 yerr=[transfer_gain[k].half_width if np.isfinite(transfer_gain[k].half_width) else 0 for k in PER_CLASS],
                 marker="o", capsize=3, label="pre-trained - from scratch (95%)")
ax_gain.axhline(TRANSFER_GAIN, color="tab:red", ls="--", lw=1, label=f"TRANSFER_GAIN = {TRANSFER_GAIN}")
ax_gain.axhline(0, color="gray", lw=1)
size_axis(ax_gain, PER_CLASS, "labelled images per class (log scale)")
ax_gain.set(ylabel="test accuracy difference", title="the gain of pre-training against the labelled-set size")
ax_gain.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: the two starting points' test accuracy on the new classes, for each labelled-set size (mean and
# spread over seeds); right: the gain with its 95% interval. The printed lines give the regime, the
# per-size gains and the claim's verdict.
#
# **A second measurement: do the pre-trained features carry over?** Freeze the whole network and
# train only a new linear head on the largest labelled set (a *linear probe*), once on top of the
# pre-trained body and once on top of a random one, with one fixed learning rate (1e-2, a head alone
# trains well at a rate a whole network would not). If the pre-trained features describe the new
# classes, the probe on them is far better than on random features, whatever fine-tuning does with them.
# (With ImageNet weights on Colab the answer is known, and the probe is skipped.)

# %%
probe_gain = None
if pretrained is None:  # the offline variant: frozen pre-trained features against frozen random ones
    probes = [transfer_config(i, PER_CLASS[-1], 1e-2, s, probe=True) for i in INITS for s in SEEDS]
    probe = {(c["init"], c["seed"]): transfer_study.run(c, transfer_run, keep_checkpoint=False)["metrics"]["test_acc"]
             for c in probes}
    probe_gain = paired([probe["pre-trained", s] for s in SEEDS], [probe["from scratch", s] for s in SEEDS])
    print(f"linear probe on frozen features, {PER_CLASS[-1]} images per class: pre-trained "
          f"{np.mean([probe['pre-trained', s] for s in SEEDS]):.4f}, random "
          f"{np.mean([probe['from scratch', s] for s in SEEDS]):.4f}; pre-trained - random: {probe_gain.describe()}")

# %% [markdown]
# The printed line compares a linear classifier on the frozen pre-trained features with one on frozen
# random features: how much of what pre-training taught is useful for classes it never saw.

# %% [markdown]
# ## 6. The paper's numbers next to ours
#
# Source 003's table, the ViT paper's table 2 (ImageNet top-1 after fine-tuning; CIFAR accuracy after
# fine-tuning; compute of the pre-training):

# %%
PAPER_TABLE = {  # ViT paper, table 2 (source 003)
    "model": ["ViT-H/14 (JFT)", "ViT-L/16 (JFT)", "ViT-L/16 (I21k)", "BiT-L (ResNet152x4)", "Noisy Student (EffNet-L2)"],
    "ImageNet": [88.55, 87.76, 85.30, 87.54, 88.5],
    "CIFAR-10": [99.50, 99.42, 99.15, 99.37, None],
    "CIFAR-100": [94.55, 93.90, 93.25, 93.51, None],
    "TPUv3-core-days": [2.5e3, 0.68e3, 0.23e3, 9.9e3, 12.3e3],
}
print(f"{'pre-trained model':28s} {'ImageNet':>8s} {'CIFAR-10':>8s} {'CIFAR-100':>9s} {'TPUv3-core-days':>15s}")
for row in zip(*PAPER_TABLE.values()):
    print(f"{row[0]:28s} " + " ".join(f"{v:>8.2f}" if v is not None else f"{'-':>8s}" for v in row[1:4])
          + f" {row[4]:>15,.0f}")
h14 = {k: v[0] for k, v in PAPER_TABLE.items()}   # the first column: ViT-H/14 (JFT)
bit = {k: v[3] for k, v in PAPER_TABLE.items()}   # the fourth: BiT-L
better = [k for k in ("ImageNet", "CIFAR-10", "CIFAR-100") if h14[k] > bit[k]]
print(f"ViT-H/14 is above BiT-L on {len(better)} of 3 sets ({', '.join(better)}) for "
      f"{h14['TPUv3-core-days'] / bit['TPUv3-core-days']:.0%} of BiT-L's pre-training compute.")

# %% [markdown]
# The ViT paper's figure 3 draws the other half of the story: ImageNet top-1 after fine-tuning, for
# models pre-trained on ImageNet-1k (1.3M images), ImageNet-21k (14M) and JFT-300M (300M). The values
# below are **approximate, read off that figure and the paper's appendix table 5** (±1 point); the
# grey line is the best BiT ResNet on each pre-training set. (Table 2 above fine-tunes at a higher
# resolution, so its numbers are a little higher than these.) On the right, this run's curve.

# %%
PRETRAIN_IMAGES = [1.3e6, 14e6, 300e6]
FIGURE3_APPROX = {"BiT (best ResNet)": [81.3, 85.4, 87.5], "ViT-B/32": [73.4, 81.3, 80.7],
                  "ViT-L/16": [76.5, 85.2, 87.1], "ViT-H/14": [None, 85.1, 88.0]}
fig, (ax_paper, ax_ours) = plt.subplots(1, 2, figsize=(11, 4))
for name, values in FIGURE3_APPROX.items():
    xs = [x for x, v in zip(PRETRAIN_IMAGES, values) if v is not None]
    ax_paper.plot(xs, [v for v in values if v is not None], marker="o", label=name,
                  color="gray" if name.startswith("BiT") else None, lw=3 if name.startswith("BiT") else 1.5)
ax_paper.set(xscale="log", xlabel="pre-training images (log scale)", ylabel="ImageNet top-1 (%)",
             title="ViT paper, figure 3 (approximate): ResNet wins small, ViT wins big")
ax_paper.legend(fontsize=8)
for m in SCALE_MODELS:
    ax_ours.plot(sizes, 100 * acc[m].mean(1), marker="o", color=colors[m], label=m)
size_axis(ax_ours, sizes)
ax_ours.set(ylabel=f"{DATASET} test accuracy (%)", title=f"this run: {DATASET}, mean of {len(SEEDS)} seeds")
ax_ours.legend(fontsize=8)
fig.tight_layout()
plt.show()
above = [n for n, v in FIGURE3_APPROX.items() if not n.startswith("BiT") and v[-1] > FIGURE3_APPROX["BiT (best ResNet)"][-1]]
print(f"In these approximate values, at 300M images {', '.join(above) or 'no ViT'} "
      f"{'is' if len(above) == 1 else 'are'} above the best ResNet. In this run, on "
      f"{sizes[0]:,} to {sizes[-1]:,} images, ResNet - ViT goes from {gap[sizes[0]].mean:+.3f} to {gap[sizes[-1]].mean:+.3f}.")
decades = (np.log10(PRETRAIN_IMAGES[0] / sizes[0]), np.log10(PRETRAIN_IMAGES[-1] / sizes[-1]))
print(f"Our smallest and largest sets are {decades[0]:.1f} and {decades[1]:.1f} decades smaller than the "
      f"paper's smallest and largest pre-training sets.")
params = {m: scale[m, sizes[0], SEEDS[0]]["metrics"]["params"] for m in SCALE_MODELS}
with torch.device("meta"):
    vit_b = sum(p.numel() for p in create_model("vit_base_patch16_224").parameters())
print(f"Our ViT has {params['vit']:,} parameters, {vit_b / params['vit']:.0f} times fewer than ViT-B/16 "
      f"({vit_b:,}), the paper's smallest; our ResNet has {params['resnet']:,}, "
      f"{params['resnet'] / params['vit']:.2f} times the ViT's.")

# %% [markdown]
# Our data sets are several decades smaller than the paper's and our models hundreds of times
# smaller (both printed above), so the paper's crossing point is out of reach: what can be measured is
# the direction, whether the gap closes as the data grows (claim C4a). Dive into Deep Learning
# (section 11.8) trains a ViT on Fashion-MNIST (10 epochs at 96 px) and notes that it does not
# outperform the ResNet on that small data set: the small-data end of the paper's figure. And the hybrid: in the paper's figure 5 hybrids
# beat plain ViTs at small compute budgets, the advantage vanishing for larger models (exercise 3
# puts it into the cpu profile's study).
#
# ## 7. Claims
#
# The thresholds and regimes were fixed in the setup cell before any run, and explained in sections
# 3-5. The table's last column says YES only when a claim was shown; its measured column says what
# kind of NO it is: "regime not reached" (the experiment did not put the model where the claim is
# about, with the reason), "inconclusive" (the seeds cannot settle it either way: more seeds would be
# needed, and it is not evidence against the claim), or "below the threshold" (evidence against it).

# %%
def note(reached: bool, why: str, text: str) -> str:
    return text if reached else f"regime not reached ({why}): {text}"


c4a_why = "; ".join(f"{n:,} images: {r.why_not()}" for n, r in c4a_regime.items() if not r.reached)
c4b_why = "with nothing the ViT does not overfit" if not nothing_overfits else ""
c4c_why = ", ".join(w for w, bad in (("the pre-trained model does not know its own classes", not source_ok),
                                     ("fine-tuning not converged", not c4c_regime.converged)) if bad)
claims = Claims("04_vit_vs_resnet")
claims.add("C4a", "ResNet beats ViT with little data and the gap shrinks as data grows",
           measured=note(c4a_reached, c4a_why,
                         f"ResNet - ViT {gap[sizes[0]].mean:+.3f} +- {gap[sizes[0]].half_width:.3f} on {sizes[0]:,} images "
                         f"({gap_verdict}), {gap[sizes[-1]].mean:+.3f} +- {gap[sizes[-1]].half_width:.3f} on {sizes[-1]:,}; "
                         f"{GAP_SHRINK} x small gap - large gap {shrink.mean:+.3f} +- {shrink.half_width:.3f} ({shrink_verdict})"),
           holds=c4a_reached and gap_verdict.startswith("gain") and shrink_verdict.startswith("gain"))
claims.add("C4b", "augmentation + regularisation lift ViT",
           measured=note(nothing_overfits, c4b_why,
                         f"on {AUGREG_IMAGES:,} images, {SCHEDULES['long']:,} steps: heavy - nothing "
                         f"{gain['heavy', 'long'].mean:+.3f} +- {gain['heavy', 'long'].half_width:.3f} ({heavy_verdict}); "
                         f"light - nothing {gain['light', 'long'].mean:+.3f}; the heavy gain long - short {grows.mean:+.3f} "
                         f"+- {grows.half_width:.3f}; nothing overfits by {val_gap['nothing']:+.3f} (clean train - validation)"),
           holds=nothing_overfits and heavy_verdict.startswith("gain"))
claims.add("C4c", "pre-trained ViT transfers far above training from scratch",
           measured=note(c4c_reached, c4c_why,
                         f"{source} -> {PER_CLASS[0]} images per class: pre-trained - from scratch "
                         f"{transfer_gain[PER_CLASS[0]].mean:+.3f} +- {transfer_gain[PER_CLASS[0]].half_width:.3f} "
                         f"({transfer_verdict}); at {PER_CLASS[-1]} per class {transfer_gain[PER_CLASS[-1]].mean:+.3f}"
                         + (f"; linear probe pre-trained - random {probe_gain.mean:+.3f}" if probe_gain else "")),
           holds=c4c_reached and transfer_verdict.startswith("gain"))
claims.show()

# %%
# One sentence per claim, from this run's numbers: what kind of verdict it is and what the second
# measurement says.
print(f"C4a: the ResNet's lead on {sizes[0]:,} images: '{gap_verdict.split(' (')[0]}'; it {direction} by {sizes[-1]:,} "
      f"images. " + ("Every run was near convergence." if c4a_reached else
                     f"Not every run had finished learning ({c4a_why}); the ViT fits {fits['vit'][-1].mean():.3f} of its "
                     f"{sizes[-1]:,} training images (clean, on up to {N_TRAIN_EVAL:,} of them), the ResNet {fits['resnet'][-1].mean():.3f}."))
print(f"C4b: nothing overfits by {val_gap['nothing']:+.3f}; heavy - nothing on the long schedule: "
      f"'{heavy_verdict.split(' (')[0]}', while its change from the short schedule is {grows.mean:+.3f}; heavy fits "
      f"{np.mean(aug_fit['heavy', 'long']):.3f} of its training images against nothing's {np.mean(aug_fit['nothing', 'long']):.3f}.")
print(f"C4c: on {PER_CLASS[0]} images per class the gain is '{transfer_verdict.split(' (')[0]}' "
      f"({transfer_gain[PER_CLASS[0]].mean:+.3f})" + (f"; the frozen pre-trained features beat random ones by "
                                                     f"{probe_gain.mean:+.3f} with a linear head." if probe_gain else "."))

# %% [markdown]
# Where a claim says NO, the second measurements above say why: for C4a, the learning curves (did every
# run finish learning?) and what limits each model (does the ViT fit its few images and still
# generalise worse, or not fit them?); for C4b, the curves and training accuracies of the three settings
# (had the heavy runs finished learning, and does the gain grow with the schedule?); for C4c, the
# pre-training accuracy, the learning-rate grid and the linear probe (did pre-training learn features
# that describe the new classes, and does fine-tuning keep them?).
#
# **Time.** The second code cell printed the gpu profile's time, as `make rehearsal` planned it. In the
# cpu profile the whole notebook trains for about half an hour on 2 CPU cores (benchmarks/RESULTS.md).
# A second run of the notebook reads every finished run from disk.

# %% [markdown]
# ## Checked exercises
#
# Each cell below holds a function for you to write: it raises `NotImplementedError` until you do,
# and the check under it then reports "not attempted yet". Once written, the check runs your function
# on several inputs (odd sizes and a batch of one among them) and compares it with the course's
# reference solution. It prints the first difference it finds: the case, a wrong type or shape (with
# the formula of the right one), how many values differ and where, and, when your answer is a known
# mistake, what that mistake is. For help, in a new cell:
#
# * `ex.mixup.hint()` prints a hint, another on each call;
# * `ex.mixup.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch04 as ex

# %% tags=["exercise"]
def mixup(images, labels, lam, perm):
    """MixUp: mix each image with its partner images[perm] by lam (a float), and the one-hot (B, K)
    labels alike. Returns (images, labels)."""
    raise NotImplementedError("write mixup, then run this cell")


ex.mixup.check(mixup)

# %% tags=["exercise"]
def smoothed_targets(labels, num_classes, eps):
    """(B,) class indices -> (B, K) targets with label smoothing eps, as
    `F.cross_entropy(label_smoothing=eps)` uses them."""
    raise NotImplementedError("write smoothed_targets, then run this cell")


ex.smoothed_targets.check(smoothed_targets)

# %% tags=["exercise"]
def paired_difference(a, b):
    """Two lists of accuracies over the same seeds -> (mean of a - b, half-width of its 95%
    interval), as `vitcourse.claims.paired` reports them (Student's t: `vitcourse.claims.t_critical`)."""
    raise NotImplementedError("write paired_difference, then run this cell")


ex.paired_difference.check(paired_difference)

# %% [markdown]
# ## More exercises (experiments to run)
#
# 1. Double the steps of the largest set in SCALE. Does the gap at the right end change? Which of the
#    two (data or compute) limits the ViT there?
# 2. Give the ViT a smaller patch (more tokens, `model_args=dict(patch_size=2)` on 28 px, a 14x14
#    grid). Does it close the gap to the ResNet on little data, and what does it cost per step?
# 3. Add `"hybrid"` to SCALE_MODELS in the cpu profile (about twice the ViT's time). Is the hybrid
#    closer to the ResNet or to the ViT on the smallest set? On the largest?
# 4. In the AugReg study, double the long schedule. Does heavy catch up with nothing, and does light
#    pull away? Then take heavy apart: add settings with only its augmentation (MixUp, RandAugment)
#    and only its regularisation (stochastic depth, dropout, weight decay 0.1). Which part costs the most?
# 5. Fine-tune with fewer labelled images per class (PER_CLASS = (3, 10, 50)). Where is the pre-trained
#    model's advantage largest, and why?
