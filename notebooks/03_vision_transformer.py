# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 03 · The Vision Transformer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/03_vision_transformer.ipynb)
#
# Dosovitskiy et al. (2021) took the Transformer encoder of chapter 02, changed almost nothing, and
# fed it an image cut into patches: *an image is worth 16x16 words*. This chapter builds that model,
# checks it against torchvision's and timm's, trains one from scratch, and then opens it up.
#
# **Learning goals**
# 1. Turn an image into a token sequence in the paper's five steps, with the tensor shape after each,
#    and compute $N = HW/P^2$ and the size of ViT-B/L/H.
# 2. See that the patch embedding is a strided convolution *and* patchify + one linear layer.
# 3. Know the pieces: class token, learned position embedding, pre-LN encoder, classification head.
# 4. Train a ViT from scratch and put chapter 00's ResNet beside it.
# 5. Read the trained ViT: position-embedding similarity, mean attention distance per head,
#    attention rollout; the position-embedding statistics first tried on embeddings whose answer is
#    known.
# 6. Change the resolution of a trained ViT by interpolating its position embedding, and measure ViT
#    section 3.2's advice: fine-tune at a higher resolution than you pre-trained at.
# 7. Say which inductive biases of a CNN (chapter 00) the ViT lacks, and see it in the numbers.
#
# Claim to reproduce (**C3**): *learned position embeddings show 2-D row/column structure (C3a);
# early layers mix local and global heads (C3b).* Each section states its threshold before it
# measures; section 10 gathers the verdicts, with the course's accuracy target (C3c) and the
# resolution result (ViT 3.2).

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

print(projected("03_vision_transformer"))

# %%
import copy
import dataclasses
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange

from vitcourse import analysis, budget
from vitcourse import data as D
from vitcourse.claims import Claims, paired, regime, rise_noise
from vitcourse.models import create_model
from vitcourse.models.vit import LinearPatchEmbedding, PatchEmbedding, ViT, config_of, patchify
from vitcourse.beside import side_by_side, threads_each, train_beside
from vitcourse.checkpoint import read_checkpoint
from vitcourse.recipes import recipe, recipe_run_dir, train_for_steps, train_recipe
from vitcourse.study import run_dir
from vitcourse.train import evaluate, fit, predict

DEVICE = vitcourse.device()

# Every run size comes from the profile (smoke: CI seconds; cpu: Fashion-MNIST in minutes;
# gpu: CIFAR-10, the real run). The training recipe of the course ViT lives in vitcourse.recipes,
# where chapters 04-07 and the benchmarks read it too.
DATASET = D.dataset_for_profile()                       # synthetic | fashion_mnist | cifar10
R = recipe("vit")
print(R)
N_TRAIN = budget(smoke=1024, cpu=None, gpu=None)         # None: the whole training set
N_ANALYSIS = budget(smoke=16, cpu=128, gpu=128)          # test images for the attention statistics
vitcourse.seed_everything(0)

# %% [markdown]
# ## 1. From an image to a sequence: the five input steps
#
# The ViT input (paper section 3.1, eq. 1; source 000) is built in five steps:
# 1. cut the $H\times W$ image into $N = HW/P^2$ patches of $P\times P$ pixels, top-left to bottom-right;
# 2. flatten each patch into a vector of $P^2 C$ numbers;
# 3. multiply each by the same matrix $E$ to get a $D$-dimensional **patch embedding**;
# 4. put a learned **class token** $x_\text{class}$ in front;
# 5. add a learned **position embedding** $E_\text{pos}$.
#
# $$z_0 = [x_\text{class};\, x_p^1 E;\, \dots;\, x_p^N E] + E_\text{pos},\quad
#   E\in\mathbb{R}^{(P^2 C)\times D},\ E_\text{pos}\in\mathbb{R}^{(N+1)\times D}$$
#
# Here on a 224x224 RGB image with the ViT-B/16 sizes, each step written out:

# %%
torch.manual_seed(0)
image = torch.randn(1, 3, 224, 224)                      # (B, C, H, W)
P, D_model = 16, 768
patches = patchify(image, P)                              # steps 1-2: (B, N, P*P*C)
E = torch.nn.Linear(P * P * 3, D_model)                   # step 3
tokens = E(patches)
x_class = torch.zeros(1, 1, D_model)                      # step 4 (learned in a real model)
tokens = torch.cat([x_class.expand(image.shape[0], -1, -1), tokens], dim=1)
E_pos = torch.zeros(1, tokens.shape[1], D_model)          # step 5 (learned in a real model)
z0 = tokens + E_pos
for step, t in [("image", image), ("1-2 patchify + flatten", patches), ("3 linear embedding", E(patches)),
                ("4 prepend class token", tokens), ("5 add position embedding", z0)]:
    print(f"{step:26s} {tuple(t.shape)}")
assert z0.shape == (1, 224 * 224 // P**2 + 1, D_model)
print(f"(steps 2 and 3 end in the same width only because P^2 C = {P}*{P}*3 = {P * P * 3} happens to equal "
      f"D = {D_model} for ViT-B/16; for ViT-L/16, D = 1024)")

# %% [markdown]
# The same on this chapter's data. Patches enter in row-major order: with $g = H/P$ patches per side
# (the cell prints it: 7 for Fashion-MNIST's 28-px images with $P = 4$), patch $k$ sits at row
# $\lfloor k/g \rfloor$, column $k \bmod g$ of the $g\times g$ grid.

# %%
train_data, test_data = D.load(DATASET, "train"), D.load(DATASET, "test")
if N_TRAIN is not None:
    train_data = D.subset(train_data, N_TRAIN)
C, H, W = train_data.shape
print(train_data, "\n", test_data)
cfg = config_of(R.model, image_size=H, in_channels=C, num_classes=len(train_data.classes))
print(f"g = H/P = {H}/{cfg.patch_size} = {cfg.grid_size} patches per side, N = {cfg.num_patches}")
fig = analysis.plot_patches(test_data.images[0], cfg.patch_size)
fig.suptitle(f"{DATASET}: class '{test_data.classes[test_data.labels[0]]}'", y=1.08)
plt.show()

# %% [markdown]
# ### How long is the sequence, and how big are the models?
#
# $N = HW/P^2$: halving the patch quadruples the sequence, and attention costs $O(N^2)$.
# The paper uses $P = 14, 16, 32$ and widths $D = 768, 1024, 1280$ for Base, Large and Huge, but it
# trained only five of the nine combinations: B/16, B/32, L/16, L/32 and H/14 (marked * below).
# The parameter counts below are computed from our own configurations (built on the `meta`
# device: shapes only, no memory), and our ViT-B/16 has exactly torchvision's 86,567,656.

# %%
print("N = HW/P^2 at 224x224:", {p: 224 * 224 // p**2 for p in (14, 16, 32)})
rows = []
with torch.device("meta"):
    for size in ("base", "large", "huge"):
        for patch in (14, 16, 32):
            name = f"vit_{size}_patch{patch}_224"
            c = config_of(name)
            params = sum(p.numel() for p in create_model(name).parameters())
            rows.append((name, c.dim, c.depth, c.num_heads, c.num_patches, params))
IN_THE_PAPER = {"vit_base_patch16_224", "vit_base_patch32_224", "vit_large_patch16_224", "vit_large_patch32_224",
                "vit_huge_patch14_224"}
print(f"{'model':26s} {'D':>5s} {'layers':>6s} {'heads':>5s} {'N':>4s} {'parameters':>13s}")
for name, d, l, h, n, params in rows:
    mark = " *" if name in IN_THE_PAPER else "  "
    print(f"{name + mark:26s} {d:5d} {l:6d} {h:5d} {n:4d} {params:13,d}")
print("* trained in the paper; the others are the same recipe at a patch size it did not use")
TABLE_1 = {"vit_base_patch16_224": 86e6, "vit_large_patch16_224": 307e6, "vit_huge_patch14_224": 632e6}  # paper
counted = dict((r[0], r[5]) for r in rows)
print("against the paper's Table 1: " + ", ".join(f"{n.split('_')[1]} {counted[n] / 1e6:.1f}M here, {v / 1e6:.0f}M there"
                                                  for n, v in TABLE_1.items())
      + " (the paper does not say what its counts include, e.g. which head, so differences of a few million "
        "are a matter of what is counted)")
assert dict((r[0], r[5]) for r in rows)["vit_base_patch16_224"] == 86_567_656

# %% [markdown]
# Almost all parameters are in the encoder: $(4 + 2r) D^2$ per layer, attention $4D^2$ (the query,
# key, value and output matrices) and MLP $2rD^2$ with $r$ the MLP ratio. The paper's $r = 4$ gives
# $12 D^2$; this chapter's small cpu model uses $r = 2$ ($8D^2$). The patch embedding has only
# $P^2 C D$ and the position embedding $(N+1) D$. The patch size
# changes the *compute* ($N$ tokens) far more than the parameter count.
#
# ## 2. The patch embedding, two ways
#
# Steps 1-3 are one convolution: a $P\times P$ kernel with stride $P$ visits every patch exactly
# once and applies the same $D\times P^2C$ matrix to it. `PatchEmbedding` is that convolution;
# `LinearPatchEmbedding` is the paper's patchify + linear. With the convolution's kernel flattened
# in patchify's order, they are the same function.

# %%
conv_embed = PatchEmbedding(C, cfg.dim, cfg.patch_size)
linear_embed = LinearPatchEmbedding.from_conv(conv_embed)
x = torch.randn(4, C, H, W)
print("conv:", tuple(conv_embed(x).shape), " patchify + linear:", tuple(linear_embed(x).shape))
print("max difference:", (conv_embed(x) - linear_embed(x)).abs().max().item())
assert torch.allclose(conv_embed(x), linear_embed(x), atol=1e-5)

# %% [markdown]
# ## 3. Class token, position embedding, pre-LN encoder, head
#
# * The **class token** is one learned vector in front of the patches. It has no pixels of its own;
#   through attention it gathers what the classifier needs, and the head reads it alone:
#   $y = \mathrm{LN}(z_L^0)$ (eq. 4), then one linear layer. The paper's classification head is an
#   MLP with one hidden layer during pre-training (a *tanh* hidden layer, `pre_logits`, in the
#   reference code) and a single linear layer at fine-tuning; we use the latter, like torchvision
#   and timm. (The GELU of the paper is the nonlinearity of the encoder's two-layer MLP, eq. 3; the
#   course's study notes, seed 004, say "MLP head with GELU", which merges the two: the paper's
#   head MLP is tanh, its GELU MLP is in every encoder block.)
# * The **position embedding** is learned, one vector per position (`nn.Parameter` of shape
#   $(N+1)\times D$). Nothing tells it the patches form a 2-D grid; section 6 looks at what it learns.
# * The encoder is chapter 02's, with the LayerNorm moved *before* each sublayer (**pre-LN**, eq. 2-3):
#
# $$z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1},\qquad
#   z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$$
#
#   The 2017 Transformer normalised *after* the residual sum (post-LN). In pre-LN the residual path
#   from the loss to every layer is a plain sum, so the first layers get gradients of about the
#   last ones' size and a high learning rate needs less warm-up (Xiong et al. 2020). Chapter 02,
#   section 8, trains both placements and measures the difference.
#
# Put together, `vitcourse.models.vit.ViT` is these pieces and nothing else (about 100 lines of
# `vitcourse/models/vit.py`). Its `forward(x, return_attention=True)` also returns every layer's
# attention weights. The tests check that it computes the same function as torchvision's `vit_b_16`
# and timm's `vit_tiny_patch16_224` (logits within 1e-4 after copying their weights with
# `vitcourse.models.convert`).

# %%
model = ViT(cfg)
n_params = sum(p.numel() for p in model.parameters())
print(cfg)
print(f"{n_params:,} parameters, {cfg.num_patches} patches + 1 class token")
logits, attentions = model(torch.randn(2, C, H, W), return_attention=True)
print("logits", tuple(logits.shape), "| attention per layer", tuple(attentions[0].shape), "x", len(attentions))

# %% [markdown]
# ## 4. Training from scratch
#
# The recipe (kept small enough for a laptop CPU in the cpu profile): AdamW, a learning rate that
# rises linearly for a warm-up and then decays to 0 along a half cosine, weight decay 0.05 on the
# weight matrices only (not on the position embedding, class token, norms and biases), label
# smoothing 0.1 (the target spreads 0.1 over all 10 classes, so the true class gets 0.9 + 0.01 = 0.91
# and every other 0.01, and the model
# is not pushed towards infinite logits), gradient clipping at 1, and random translations of a
# pixel or so as augmentation (`R.augment`). A ViT has to *learn* that a shifted image is the same
# image (section 9): the translations show it. The whole data set sits in memory on the device
# (`DeviceLoader`), and augmentation is batched there too. How the cpu profile's model (64 wide,
# 4 layers, 16 epochs: about 35-45 s an epoch on both threads of a quiet 2-core laptop, about 55-70 s
# on the one thread it gets while seed 1 trains beside it, as below; this run's own times are printed)
# was chosen, and what wider models or stronger shifts cost, is in `benchmarks/RESULTS.md`
# (`make bench-accuracy` times it). After training, the cell compares the training-batch accuracy
# with the test accuracy. The rule, here and in C3c: a model that is **2 points or more** better on
# its training batches than on the test images is over-fitting; below that, there is no sign of it
# (the training figure is a running mean over the epoch's augmented batches, so only a rough guide).
#
# This run (seed 0) is the model that sections 5-9 read. It is also chapter 06's starting point,
# and the first seed of C3c, the course's accuracy target, stated here before it trains: **C3c holds
# when the mean test accuracy over the seeds is at least 90%** (Fashion-MNIST, cpu profile; 85% on
# CIFAR-10 in the gpu profile). The next section says why it is judged over seeds.
#
# *An aside on speed, which the ViT does not depend on.* C3c (next) needs the same recipe trained with
# other seeds. On a CPU a second thread speeds one small model's training up by only about 1.3x (its
# matrices are too small to share well), so two one-thread runs side by side finish both seeds sooner
# than one after the other on two threads: 1.2-1.5x on the course's 2-core machine
# (`benchmarks/RESULTS.md`, item 6). So `train_beside` starts the other seeds in a second process
# now, and this cell trains seed 0 on the threads it leaves (all of them again from the epoch after
# the other process ends, by `on_epoch_end`). The line it prints says which seeds, the
# process's id and the threads on each side (that process's output goes to `beside.log` in each
# seed's run folder). Interrupting this cell stops only seed 0; run it again and it resumes seed 0
# and finds the other process still at work; restarting the kernel stops both, and each run resumes
# from its last checkpoint. On a GPU it starts nothing, and C3c trains the seeds one after another.
# (A run on one thread can end slightly differently from the same run on two, as runs on two
# machines do: the sums inside a matrix product are split differently, and training carries such
# last-digit differences on.)

# %%
SEEDS = budget(smoke=(0, 1), cpu=(0, 1), gpu=(0, 1, 2))     # smoke: two, so CI starts the process from a kernel
vitcourse.seed_everything(0)
model = R.build(train_data)                              # ViT(cfg), sized for the data
assert model.config == cfg
train_loader = D.DeviceLoader(train_data, R.batch_size, shuffle=True, seed=0, device=DEVICE, **R.augment)
test_loader = D.DeviceLoader(test_data, 500, shuffle=False, device=DEVICE)
init_pos_embed = model.pos_embed.detach().clone()
# The checkpoint is written after every epoch: re-running this cell after a disconnect resumes. Its
# folder is named from the run's settings, so changing a knob starts a new run beside the old one.
# It is the folder `train_recipe(R, train_data, name="03_vit")` uses: chapter 06 loads this model.
run = recipe_run_dir(R, train_data, name="03_vit")
ckpt = run / "checkpoint.pt"
trains_here = not ckpt.exists() or read_checkpoint(ckpt)["epoch"] < R.epochs   # not only loaded
with train_beside(R, train_data, name="03_vit", seeds=SEEDS[1:], device=DEVICE, own=ckpt) as other_seeds:
    print(other_seeds)
    history = fit(model, train_loader, test_loader, epochs=R.epochs, **R.fit_args(), device=DEVICE,
                  val_name="test", checkpoint=ckpt, on_epoch_end=other_seeds.on_epoch_end)
train_seconds = sum(e["seconds"] for e in history.epochs)  # right after a resume too
test_acc = history.last["test_acc"]
print(f"{train_seconds / 60:.1f} min, {history.last['images_per_s']:.0f} images/s, test accuracy {test_acc:.4f}")
fig = history.plot(title=f"ViT on {DATASET}")
plt.show()
accs_so_far = history["test_acc"]
last_gain = accs_so_far[-1] - accs_so_far[-2] if len(accs_so_far) > 1 else float("nan")
fit_gap = history.last["train_acc"] - test_acc
print(f"After {R.epochs} epochs: training-batch accuracy {history.last['train_acc']:.4f}"
      f"{' (on augmented images)' if R.augment else ''}, test accuracy {test_acc:.4f}; the last epoch changed "
      f"test accuracy by {last_gain:+.4f}, while the cosine schedule took the learning rate "
      f"from {(history['lr'][-2] if len(history.epochs) > 1 else R.lr):.1e} to {history['lr'][-1]:.2g}. Training-batch minus test accuracy is "
      f"{fit_gap:+.4f}: " + ("no sign of over-fitting (the training accuracy is a running mean over augmented "
                             "batches, so it is only a rough guide)." if fit_gap < 0.02 else
                             "the model fits its training images better than the test images (over-fitting)."))

# %% [markdown]
# ### C3c: the course's accuracy target, over seeds
#
# C3c is **a course target, not a paper claim**: the cpu recipe was chosen to train in about 10
# minutes on a quiet 2-core laptop (one seed on both threads) with 90% test accuracy on Fashion-MNIST
# as its target (gpu profile: 85% on CIFAR-10). `benchmarks/RESULTS.md` records that the recipe search already fell short of it
# (89.2%), so expect this verdict to be close.
# One run is one draw: another initialisation and another order of the data give another accuracy.
# So the same recipe is trained again with other seeds (`train_recipe` is the cell above in one
# call, with its own checkpoint folder per seed), and the target is judged on the mean over seeds:
# **C3c holds when the mean test accuracy is at least the target**, and the 95% interval of that
# mean (Student's t over seeds: with so few runs the normal 1.96 would be too narrow) says whether the verdict could change with more seeds: the verdict
# follows the rule on the mean alone, and the interval says how far to trust it. With two seeds the
# interval is wide (t = 12.7 for one degree of freedom): that is the honest size of what two runs
# can tell. The cell also prints each seed's training-batch accuracy beside its test accuracy, read
# by section 4's 2-point rule for over-fitting. That rule reads a running mean over augmented
# batches, so a second measurement follows: each seed's accuracy on 10,000 of its own training
# images, un-augmented, against its test accuracy, read seed by seed. A seed is **under-fitting**
# when that accuracy is itself below the target and less than 2 points above test: it cannot reach
# the target even on images it trained on, and does hardly better on them than on new ones, so a
# shortfall comes from capacity or training length, not from memorising. Within 2 points and at or
# above the target on its training images, it is **a good fit**; 2 points or more above test, it has
# begun to memorise. The recipe under-fits when every seed does. Nothing in this chapter is chosen from these runs (no
# model selection), and every number is reported on the test split under its name. (The recipe itself was chosen in
# `benchmarks/RESULTS.md` by comparing test accuracy per epoch: a light use of the test split that a
# larger study would make on a validation split held out from the training images, as chapter 04
# does.) The analysis
# sections read seed 0; where a statistic costs no training, seed 1's model is read too.

# %%
TARGET_ACC = budget(smoke=None, cpu=0.90, gpu=0.85)     # the course target, stated before the runs
other_seeds.wait()               # the other process (if one was started) has trained its seeds
seed_acc, seed_models, seed_train = {0: test_acc}, {0: model}, {0: history.last["train_acc"]}
for seed in SEEDS[1:]:           # loaded when the other process trained them, trained here when not
    # No test curve for these runs (only the end is judged): the test set is evaluated once, at the end.
    seed_models[seed], h = train_recipe(R, train_data, name="03_vit", seed=seed, device=DEVICE)
    seed_models[seed].eval()
    seed_acc[seed], seed_train[seed] = evaluate(seed_models[seed], test_loader)["acc"], h.last["train_acc"]
    print(f"seed {seed}: test accuracy {seed_acc[seed]:.4f} after {sum(e['seconds'] for e in h.epochs) / 60:.1f} min")
accs = list(seed_acc.values())
mean_acc = sum(accs) / len(accs)
to_target = paired(accs, [TARGET_ACC or 0.0] * len(accs))     # accuracy - target over seeds, with its interval
print(f"test accuracy over {len(accs)} seed(s): " + ", ".join(f"{a:.4f}" for a in accs) + f"; mean {mean_acc:.4f}")
if TARGET_ACC is not None and len(accs) > 1:
    lo, hi = mean_acc - to_target.half_width, mean_acc + to_target.half_width
    print(f"95% interval of the mean: {lo:.4f} to {hi:.4f}; target {TARGET_ACC:.2f}: the mean is "
          f"{'at or above' if mean_acc >= TARGET_ACC else 'below'} it, and the interval "
          f"{'contains it (more seeds could change the verdict)' if lo <= TARGET_ACC <= hi else 'excludes it'}")
no_overfit = all(seed_train[s] - seed_acc[s] < 0.02 for s in seed_acc)  # section 4's rule for over-fitting
fit_line = ", ".join(f"seed {s} {seed_train[s]:.4f} against {seed_acc[s]:.4f}" for s in seed_acc)
print(f"training-batch against test accuracy: {fit_line}: "
      + ("no sign of over-fitting in any seed (training-batch accuracy less than 2 points above test)"
         if no_overfit else "some seed fits its training batches better than the test images by 2 points or "
         "more: over-fitting"))
seen = D.DeviceLoader(D.subset(train_data, min(10_000, len(train_data))), 500, shuffle=False, device=DEVICE)
seen_acc = {s: evaluate(seed_models[s], seen)["acc"] for s in seed_models}
close = all(seen_acc[s] - seed_acc[s] < 0.02 for s in seed_models)
# Below the target on its own training images (1e-6: an accuracy of exactly 90.00% is at the target).
short = [s for s in seed_models if TARGET_ACC is not None and seen_acc[s] < TARGET_ACC - 1e-6]
underfit = close and len(short) == len(seed_models)
fit_reading = ("some seed does 2 points or more better on its own training images: it has begun to memorise them"
               if not close else
               "every seed under-fitting (below the target even on its own training images, and less than 2 points "
               "above test): more capacity or more epochs, not regularisation, is what the shortfall asks for"
               if underfit else
               "less than 2 points above test in every seed; " + ", ".join(f"seed {s}" for s in short)
               + " below the target even on its own training images (under-fitting), "
               + ", ".join(f"seed {s}" for s in seed_models if s not in short) + " at or above it (a good fit): "
               "the recipe as a whole is not read as under-fitting"
               if short else "less than 2 points above test in every seed, and at or above the target on its "
                             "training images: a good fit")
print("on 10,000 of the training images, un-augmented, against test: "
      + ", ".join(f"seed {s} {seen_acc[s]:.4f} against {seed_acc[s]:.4f}" for s in seed_models) + ": " + fit_reading)

# %% [markdown]
# Chapter 00's ResNet on the same training set, for scale (`recipe("resnet")`): it is loaded from
# its checkpoint when chapter 00 has run, and trained here when not. Its convolutions build in what
# the ViT has to learn (section 9).

# %%
R_CNN = recipe("resnet")
cnn, cnn_history = train_recipe(R_CNN, train_data, test_data, name="00_resnet", progress=False, device=DEVICE)
cnn.eval()
cnn_seconds = sum(e["seconds"] for e in cnn_history.epochs)
print("(MFLOPs: millions of floating-point operations per image, 2 per multiply-add; papers usually count "
      "multiply-adds)")
print(f"{'model':12s} {'parameters':>10s} {'MFLOPs/image':>12s} {'epochs':>6s} {'train min':>9s} {'test acc':>8s}")
for name, net, hist, secs in (("ViT (seed 0)", model, history, train_seconds), (R_CNN.model, cnn, cnn_history, cnn_seconds)):
    print(f"{name:12s} {sum(p.numel() for p in net.parameters()):10,d} "
          f"{analysis.forward_flops(net, (C, H, W)) / 1e6:12.1f} {len(hist.epochs):6d} {secs / 60:9.1f} "
          f"{hist.last['test_acc']:8.4f}")
print("(minutes are this machine's; compare them only roughly"
      + (f": the ViT trained beside its other seeds, on {other_seeds.threads_used()})"
         if trains_here and other_seeds.shared and other_seeds.epoch_threads else
         ": the ViT's are those of the run that trained it, loaded here)" if not trains_here else ")"))
cnn_acc = cnn_history.last["test_acc"]
print(f"The ResNet reaches {cnn_acc:.2%} in {R_CNN.epochs} epochs; the ViT, {mean_acc:.2%} over seeds in {R.epochs}: "
      f"{f'the CNN (one run) is ahead of the ViT mean by {100 * (cnn_acc - mean_acc):.2f} points' if cnn_acc > mean_acc else 'the ViT is level or ahead'} "
      "at this data size. Chapter 04 measures how that gap moves with the amount of data.")

# %% [markdown]
# ## 5. Where the model looks: attention maps and attention rollout
#
# Every layer has `heads` attention matrices of size $(N+1)\times(N+1)$. The class token's row of the
# last layer says which patches it reads. One layer is a partial view: information also flows
# through the residual path and earlier layers. **Attention rollout** (Abnar & Zuidema 2020) follows
# it through the whole network: average the heads, add the identity for the residual connection,
# renormalise rows, and multiply the layers,
# $\tilde A_\ell = \bar A_\ell\,\tilde A_{\ell-1}$ with $\bar A_\ell = \mathrm{rownorm}(\mathrm{mean}_h A_\ell + I)$.
#
# The maps are drawn at the grid's resolution, one flat square per patch (smoothing would invent
# detail the model does not have), in a perceptual colour map (dark: little attention, bright: much).

# %%
model.eval()
mean, std = test_data.mean, test_data.std
analysis_data = D.subset(test_data, N_ANALYSIS, seed=1)
images = next(iter(D.DeviceLoader(analysis_data, N_ANALYSIS, shuffle=False, device=DEVICE)))[0]
attentions = analysis.attention_maps(model, images)
with torch.no_grad():
    predictions = model(images).argmax(-1).cpu()
cls_maps = analysis.cls_attention(attentions[-1], model).cpu()
fig = analysis.plot_attention_heads(images[0].cpu(), cls_maps[0], mean, std,
                                    title="last layer: class-token attention per head")
plt.show()
rollout = analysis.attention_rollout(attentions)
assert torch.allclose(rollout.sum(-1), torch.ones_like(rollout.sum(-1)), atol=1e-4)
maps = analysis.rollout_map(rollout, model).cpu()
show = 8
fig = analysis.plot_rollout(images[:show].cpu(), maps[:show], mean=mean, std=std,
                            labels=[f"{test_data.classes[t]}\npredicted: {test_data.classes[p]}"
                                    for t, p in zip(analysis_data.labels[:show].tolist(), predictions[:show])])
plt.show()

# %% [markdown]
# What do the maps show? A map can look meaningful and be close to uniform, so we measure. On
# Fashion-MNIST the background is black, so a patch shows the object when its mean pixel is above 5%
# (`analysis.object_patches`). If the class token reads the object, its attention share on object
# patches is above the share of object patches (which is what uniform attention gives); the cell
# reads it as "reads the object" when the share is more than 5 points above uniform's.

# %%
if C == 1:
    on_object = analysis.object_patches(analysis_data.images, cfg.patch_size)
    uniform_share = on_object.float().mean().item()
    patch_maps = cls_maps / cls_maps.sum(dim=(-2, -1), keepdim=True)           # renormalised over the patches
    head_share = (patch_maps * on_object[:, None]).sum(dim=(-2, -1)).mean(0)   # (the class token also reads itself)
    roll = rollout[:, 0, model.num_prefix_tokens:].cpu()
    roll = rearrange(roll / roll.sum(-1, keepdim=True), "b (gh gw) -> b gh gw", gh=cfg.grid_size)
    rollout_share = (roll * on_object).sum(dim=(1, 2)).mean().item()
    print(f"object patches: {uniform_share:.1%} of all patches (the share uniform attention puts on the object)")
    print("last layer, class token, share on object patches per head: "
          + ", ".join(f"head {h + 1} {s:.1%}" for h, s in enumerate(head_share.tolist())))
    print(f"rollout (all layers): {rollout_share:.1%} on object patches; largest weight on one patch "
          f"{roll.flatten(1).amax(-1).mean():.1%} (uniform {1 / cfg.num_patches:.1%})")
    above = [h + 1 for h, s in enumerate(head_share.tolist()) if s > uniform_share + 0.05]
    readers = ("head " + str(above[0]) + " reads" if len(above) == 1 else
               "heads " + ", ".join(map(str, above)) + " read" if above else "no last-layer head reads")
    below = [h + 1 for h, s_ in enumerate(head_share.tolist()) if s_ < uniform_share - 0.05]
    if below:
        print(f"head(s) {', '.join(map(str, below))} put more weight on the background than uniform attention would")
    print(f"So: {readers} the object "
          f"more than 5 points above uniform, and the rollout is {100 * (rollout_share - uniform_share):+.1f} points from uniform: "
          f"{'it concentrates on the object' if rollout_share - uniform_share > 0.05 else 'close to uniform, so its picture says little'} (each rollout map is scaled to its own largest patch, so even a near-uniform "
          "map shows bright spots).")
else:
    print("The object mask needs a black background (Fashion-MNIST); on CIFAR read the maps by eye.")

# %% [markdown]
# ## 6. What the position embedding learned (ViT figure 7, centre)
#
# Tile $(r, c)$ shows the cosine similarity between the position embedding of the patch at row $r$,
# column $c$ and those of all patches. Before training they are random vectors (similarity about 0
# except to itself). The paper's ViT-L/32 shows each tile bright around its own patch and along its
# own row and column: "closer patches tend to have more similar position embeddings. Further, the
# row-column structure appears". Two statistics say whether ours did, one per half of that sentence:
#
# * **grid-neighbour share** (distance): the share of positions whose *most similar* other position
#   is one of its 4 grid neighbours (`analysis.grid_neighbour_share`);
# * **row/column share**: for each position, the share of its $2(g-1)$ most similar others that lie
#   in its own row or column (exactly $2(g-1)$ patches do), averaged (`analysis.row_column_share`).
#
# A statistic is only as good as its calibration, so first we compute both on embeddings whose answer
# we know, built on this chapter's grid and width: random vectors (no structure: 1,000 draws give
# the chance level and its spread), a row part plus a column part with random values (row/column
# structure, no distance), and the fixed 2-D sin-cos embedding (one half of the channels encodes the
# row, the other the column, as chapter 02's table: both structures).

# %%
g = cfg.grid_size
null = analysis.random_embedding_shares(g, cfg.dim, draws=1000, seed=0)
gen = torch.Generator().manual_seed(0)
constructed = {"2-D sin-cos": analysis.sincos_2d_embedding(g, cfg.dim),
               "row + column": analysis.row_column_embedding(g, cfg.dim, gen),
               "random": torch.randn(g * g, cfg.dim, generator=gen)}
constructed_sim = {name: analysis.embedding_similarity(e) for name, e in constructed.items()}
print(f"{'embedding':26s} {'grid-neighbour share':>21s} {'row/column share':>17s} {'correlation with distance':>26s}")
for name, s in constructed_sim.items():
    print(f"{name:26s} {analysis.grid_neighbour_share(s):21.3f} {analysis.row_column_share(s):17.3f} "
          f"{analysis.position_structure(s)['distance_correlation']:+26.3f}")
for stat, values in null.items():
    print(f"1,000 random embeddings, {stat}: mean {values.mean():.3f}, 99.9th percentile "
          f"{values.quantile(0.999):.3f}, largest {values.max():.3f}")
fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
for ax, (name, s) in zip(axes, constructed_sim.items()):
    analysis.plot_position_similarity(s, title=f"constructed: {name}", ax=ax)
fig.suptitle(f"What the statistics see on a {g}x{g} grid: embeddings whose answer is known")
fig.tight_layout()
plt.show()

# %% [markdown]
# The sin-cos embedding has both structures; the row + column embedding has rows and columns but no
# distance (its most similar patch is any row or column mate, rarely a neighbour); random vectors
# have neither. (The sin-cos panel looks almost uniformly red: its slowly varying channels keep every
# similarity between about 0.7 and 1. What the statistics read is the *order* of the similarities,
# which a colour scale from -1 to 1 hides.) The printed numbers show each statistic telling them apart. The last column is
# why we do not judge by the correlation of similarity with distance over all pairs: it has no
# natural threshold, the pure row + column embedding (the very structure the claim names) gets only
# a weak value, and a trained model's far pairs can be alike for a reason that is not position at
# all (the end of this section measures it).
#
# **C3a holds**, with thresholds fixed here, before the trained embeddings are measured, when for
# *every* trained seed:
# 1. the grid-neighbour share is at least **0.5** (for most positions the most similar embedding is
#    a neighbour; no one of the 1,000 random embeddings comes near it, and the row + column
#    embedding without distance stays far below), and
# 2. the row/column share is above the **99.9th percentile of the random embeddings** (printed
#    above): rows and columns are over-represented among the most similar, as in figure 7;
#
# while the same model's embedding at initialisation passes neither.

# %%
T_NEIGHBOUR = 0.5
T_ROW_COLUMN = null["row_column_share"].quantile(0.999).item()
sim_init = analysis.position_embedding_similarity(model, init_pos_embed)
sims = {seed: analysis.position_embedding_similarity(m) for seed, m in seed_models.items()}
sim = sims[0]
fig = analysis.plot_position_similarity(sim, title="trained position embeddings, seed 0 (cosine)")
plt.show()


def structure_of(s):
    return {"neighbour": analysis.grid_neighbour_share(s), "row_column": analysis.row_column_share(s)}


structure_init = structure_of(sim_init)
structures = {seed: structure_of(s) for seed, s in sims.items()}
print(f"thresholds: grid-neighbour share >= {T_NEIGHBOUR}, row/column share > {T_ROW_COLUMN:.3f}")
for name, st in [("initialisation", structure_init)] + [(f"trained, seed {k}", v) for k, v in structures.items()]:
    print(f"{name:18s} grid-neighbour share {st['neighbour']:.3f}  row/column share {st['row_column']:.3f}  "
          f"-> {'passes' if st['neighbour'] >= T_NEIGHBOUR and st['row_column'] > T_ROW_COLUMN else 'fails'}")
norm_init = init_pos_embed[0, 1:].norm(dim=-1).mean().item()
norm_trained = model.pos_embed.detach()[0, 1:].norm(dim=-1).mean().item()
print(f"position embedding norm per patch: {norm_init:.2f} at initialisation, {norm_trained:.2f} after training "
      f"(seed 0, {norm_trained / norm_init:.0f}x: what training added outweighs the small random start)")

# %% [markdown]
# In the figure, high similarity is dark red, none is white, negative is blue (each tile's own
# patch, similarity 1, is the darkest cell): the numbers count how often the next darkest cell of a tile is one of its
# neighbours. A second look, to see *which* structure was learned: the mean similarity
# against distance on the grid (binned to the nearest whole patch, so 1 and the diagonal 1.41 share
# the first bin; each point is labelled with the number of pairs of patches it averages, few at the
# largest distances, which only corners reach), and rows against
# columns. The row/column share of C3a pools the two; the mean similarities below say which one
# carries it.
#
# Why would far patches be alike at all (a rise of the curve at the largest distances: the cell
# prints whether this run shows one)? A second measurement: the data. A position embedding is learned from what appears at
# that position, so two positions that usually see the same thing (both the garment, or both the
# black background) get no reason to differ. On Fashion-MNIST we count, for every pair of patches,
# how often in the training images both show the object or both show background, and correlate
# that agreement with the embeddings' similarity, beside the correlation with distance. Content does
# not compete with position as an explanation: it is how position gets into the embedding (a
# patch's position is worth encoding because what appears there depends on it). So the question is
# narrower: how much of the grid structure would content alone give? Two more readings follow from it. The
# background share per grid row and per grid column says along which direction the content changes
# most, and so which of rows or columns the embedding should separate. And the agreement matrix,
# scored by C3a's two statistics as if it were a similarity, is a baseline: the grid that
# "positions alike when their content is alike" gives by itself, to compare the embeddings with.
# The baseline is descriptive: it does not enter C3a's verdict (the rule above stands), and the
# claims table says beside the verdict whether each share is above it.

# %%
structure = analysis.position_structure(sim)
dist_init, by_dist_init, _ = analysis.similarity_by_distance(sim_init, bin_width=1)
dist_bins, by_dist, counts = analysis.similarity_by_distance(sim, bin_width=1)
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(dist_bins, by_dist, marker="o", label="trained, seed 0")
ax.plot(dist_init, by_dist_init, marker="s", ls="--", label="at initialisation")
for d, v, n in zip(dist_bins, by_dist, counts):
    ax.annotate(f"{n // 2}", (d, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
ax.axhline(0, color="gray", lw=0.5)
ax.set(xlabel="distance between patches (in patches, binned)", ylabel="mean cosine similarity",
       title="position-embedding similarity against distance (labels: pairs per bin)")
ax.margins(y=0.15)                                      # room for the labels above the points
ax.legend()
plt.show()
low_at = dist_bins[min(range(len(by_dist)), key=by_dist.__getitem__)]
stronger = "row" if structure["same_row"] > structure["same_column"] else "column"
means_init = analysis.position_structure(sim_init)
print(f"mean similarity to the same row {structure['same_row']:+.3f}, same column {structure['same_column']:+.3f}, "
      f"elsewhere {structure['elsewhere']:+.3f} (at initialisation {means_init['same_row']:+.3f}, "
      f"{means_init['same_column']:+.3f}, {means_init['elsewhere']:+.3f})")
print(f"The similarity goes from {by_dist[0]:+.3f} at distance 1 to its lowest, {min(by_dist):+.3f}, at distance "
      f"{low_at:.0f}, and ends at {by_dist[-1]:+.3f} for the farthest pairs ({counts[-1] // 2} pairs); patches sharing a "
      f"{stronger} are the more alike ({max(structure['same_row'], structure['same_column']):+.3f} against "
      f"{min(structure['same_row'], structure['same_column']):+.3f}). "
      + (f"The curve rises again by {by_dist[-1] - min(by_dist):+.3f} after its lowest point"
         + (": the farthest pairs are more alike than neighbours, which the paper's 'closer patches tend to have "
            "more similar position embeddings' does not predict (the lines below look at the data for why)."
            if by_dist[-1] > by_dist[0] else "." ) if by_dist[-1] > min(by_dist) + 0.02 else
         "It does not rise again at the largest distances."))

sim_flat = sim.reshape(g * g, g * g).cpu()
off = ~torch.eye(g * g, dtype=torch.bool)
corr_distance = torch.corrcoef(torch.stack([sim_flat[off], analysis.patch_distances(g, 1)[off]]))[0, 1].item()
print(f"seed 0: linear correlation of similarity with distance over all pairs: {corr_distance:+.3f}")
if C == 1:
    on = analysis.object_patches(train_data.images[:10_000], cfg.patch_size).flatten(1).float()   # (images, N)
    agreement = (on.T @ on + (1 - on).T @ (1 - on)) / on.shape[0]                                  # P(same content)
    corr_content = torch.corrcoef(torch.stack([sim_flat[off], agreement[off]]))[0, 1].item()
    background = 1 - on.mean(0)
    mostly_bg = [(k // g, k % g) for k in range(g * g) if background[k] > 0.9]
    print(f"seed 0: correlation of similarity with how often the two patches show the same thing: {corr_content:+.3f}")
    print(f"{len(mostly_bg)} of {g * g} patches are background in more than 90% of training images, at (row, column) "
          f"{mostly_bg or 'none'}; background share per grid column, left to right: "
          + " ".join(f"{b:.2f}" for b in background.reshape(g, g).mean(0).tolist()))
    content_share = analysis.grid_neighbour_share(agreement.reshape(g, g, g, g))
    content_rc = analysis.row_column_share(agreement.reshape(g, g, g, g))
    print("background share per grid row, top to bottom: "
          + " ".join(f"{b:.2f}" for b in background.reshape(g, g).mean(1).tolist()))
    n_pos = g * g
    by_col, by_row = background.reshape(g, g).mean(0), background.reshape(g, g).mean(1)
    spread = {"column": (by_col.max() - by_col.min()).item(), "row": (by_row.max() - by_row.min()).item()}
    varies = max(spread, key=spread.get)                   # the direction in which the content changes most
    other = "row" if varies == "column" else "column"
    print(f"Background varies more from one {varies} to the next (a spread of {spread[varies]:.2f} across the "
          f"{varies}s, {spread[other]:.2f} across the {other}s), so patches in one {other} differ more in content "
          f"than patches in one {varies}: the embeddings' stronger direction, the same {stronger}, "
          + ("is the one the content predicts." if stronger == varies else "is not the one the content predicts."))
    more_grid = all(st["neighbour"] > content_share for st in structures.values())
    more_rc = all(st["row_column"] > content_rc for st in structures.values())
    print(f"The content baseline, scored as a similarity: grid-neighbour share {content_share:.2f} "
          f"({round(content_share * n_pos)} of {n_pos} positions), row/column share {content_rc:.2f}. The trained "
          "embeddings: grid-neighbour shares " + ", ".join(f"{st['neighbour']:.2f} ({round(st['neighbour'] * n_pos)} of {n_pos})"
                                                           for st in structures.values())
          + f" (one position is {1 / n_pos:.2f}), row/column shares "
          + ", ".join(f"{st['row_column']:.2f}" for st in structures.values()) + ": "
          + ("more neighbour structure than the content alone gives: consistent with embeddings that learned "
             "the grid beyond which patches look alike" if more_grid else
             "no more neighbour structure than the content alone gives: this run does not show grid structure "
             "beyond which patches look alike")
          + ("; and a higher row/column share than the content's." if more_rc else
             "; but their row/column shares are not above the content's: that part of the structure is no "
             "more than the content alone would give."))


# %% [markdown]
# ## 7. Mean attention distance per head (ViT figure 7, right)
#
# For each head: the distance in pixels between a query patch and the patches it attends to,
# weighted by the attention, averaged over queries and images (appendix D.7). It is the attention
# analogue of a CNN's receptive field. A CNN's first layers can only be local; a ViT head can look
# anywhere from layer 1. The paper finds, for models pre-trained on JFT-300M, that some early heads
# look far (global) while others stay local, with the distances growing with depth.
#
# **Prediction, stated before the measurement**: Raghu et al. (2021) found that the local early heads
# appear *only with large-scale pre-training*; ViTs trained on ImageNet alone have few of them. On
# 60,000 small images, expect early heads whose mean distances are alike and close to uniform
# attention's, so C3b is likely
# *not* to hold here. The claim's regime, stated as a condition the cell prints: **pre-training on
# more images than ImageNet-1k's 1,281,167** (the scale at which Raghu et al. found few local early
# heads); where the training set is smaller, the verdict says "regime not reached". **C3b holds** when, in layers 1-2, the smallest mean
# attention distance of a head is at most half the largest (a clearly local head beside a global
# one), for every trained seed. The dashed line in the figure is uniform attention (every patch equally), which sets the
# scale: a head at that line does not prefer near or far. The bar is calibrated on constructed heads,
# printed first: a head that spreads its weight evenly over its 3x3 or its 5x5 neighbourhood (1 or 2
# patches each way, cut at the border), against uniform attention. A ratio of at most 0.5 means some
# early head is about as local as the 5x5 one while another looks as far as uniform attention.
#
# The mean distance mixes two things: where a head looks and how spread its weights are (a head that
# looks at one far patch and a head spread evenly can have the same mean). The correlation between
# a head's weight on a patch and that patch's distance, per query, separates them: negative means
# the head prefers near patches whatever their spread, about 0 means distance does not matter; a
# head is read as clearly local below r = -0.2. A third statistic, the entropy of each head's
# attention as a share of uniform attention's, says whether a head selects at all: above 0.9 for
# every head, the heads barely select. The two distance statistics read patch-to-patch attention
# only (the class token's row and column dropped, each row's weights renormalised); the entropy
# share reads each patch's attention over all N + 1 tokens, class token included. And the untrained
# model says which part of the pattern was learned.

# %%
def head_distances(net):
    """(layers, heads) mean attention distance of `net` on the analysis images."""
    return analysis.mean_attention_distance(analysis.attention_maps(net, images), net).cpu()


distances = {seed: head_distances(m) for seed, m in seed_models.items()}
distance = distances[0]
REGIME_IMAGES = 1_281_167                 # ImageNet-1k's training set: C3b's regime needs more than this
c3b_regime = len(train_data) > REGIME_IMAGES
print(f"C3b's regime: {len(train_data):,} training images against more than {REGIME_IMAGES:,} needed: "
      + ("reached" if c3b_regime else "regime not reached"))
uniform = analysis.patch_distances(cfg.grid_size, cfg.patch_size).mean().item()
# C3b's bar, calibrated: heads that attend evenly to the patches at most k rows and k columns away.
apart = analysis.patches_apart(cfg.grid_size)         # (N, N) patches apart along either axis
for k in (1, 2):
    local = analysis.mean_attention_distance((apart <= k).float()[None, None], 0, patch_size=cfg.patch_size).item()
    print(f"constructed head on its {2 * k + 1}x{2 * k + 1} neighbourhood: {local:.1f} px, {local / uniform:.2f} of "
          f"uniform attention's {uniform:.1f} px")
fig = analysis.plot_attention_distance(distance, cfg.patch_size, cfg.grid_size,
                                       title=f"mean attention distance, seed 0, {N_ANALYSIS} test images")
plt.show()
for layer, row in enumerate(distance, 1):
    print(f"layer {layer}: " + " ".join(f"{d:5.1f}" for d in row.tolist()) + f"   (uniform {uniform:.1f} px)")
for seed, dist in distances.items():
    early_min, early_max = dist[:2].min().item(), dist[:2].max().item()
    print(f"seed {seed}: layers 1-2 heads from {early_min:.1f} to {early_max:.1f} px (ratio {early_min / early_max:.2f}; "
          f"C3b needs <= 0.5); last layer {dist[-1].min():.1f} to {dist[-1].max():.1f} px")

corr = analysis.attention_distance_correlation(attentions, model).cpu()
fig, ax = plt.subplots(figsize=(6, 3.4))
shown = ax.imshow(corr.T.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
for l in range(cfg.depth):
    for h in range(cfg.num_heads):
        ax.text(l, h, f"{corr[l, h]:+.2f}", ha="center", va="center", fontsize=8)
ax.set(xlabel="layer", ylabel="head", title="correlation of attention weight with distance (seed 0)",
       xticks=range(cfg.depth), xticklabels=range(1, cfg.depth + 1),
       yticks=range(cfg.num_heads), yticklabels=range(1, cfg.num_heads + 1))
fig.colorbar(shown, ax=ax, label="Pearson r (blue: local)")
plt.show()
local_heads = [(l + 1, h + 1) for l in range(cfg.depth) for h in range(cfg.num_heads) if corr[l, h] < -0.2]
print(f"heads with r < -0.2 (clearly preferring near patches): {local_heads or 'none'}; "
      f"layers 1-2 range from r = {corr[:2].min():+.2f} to {corr[:2].max():+.2f}")
# How selective is each head at all? Entropy of its rows relative to uniform attention over all tokens.
selectivity = analysis.attention_entropy(attentions).cpu() / math.log(cfg.num_patches + model.num_prefix_tokens)
most_selective = selectivity.mean(1).argmin().item()          # the layer whose heads select the most
print("attention entropy as a share of uniform attention's (1 = uniform), per layer: "
      + "; ".join(f"layer {l + 1}: " + " ".join(f"{v:.2f}" for v in row.tolist()) for l, row in enumerate(selectivity)))
print(f"The least selective head spreads its weight at {selectivity.max():.0%} of the uniform entropy, the most "
      f"selective at {selectivity.min():.0%}: "
      + ("the heads barely select at all, so there is no local/global split to find (SL-ViT's 'smooth attention' "
         "on small data, chapter 06)." if selectivity.min() > 0.9 else
         "some heads do select, and where they do not prefer near patches (the correlations above) they select "
         "by something other than a linear preference for distance (what a patch shows, an offset or a row, or the class token: not measured here). "
         f"The most selective layer on average, layer {most_selective + 1}, has distance correlations from "
         f"{corr[most_selective].min():+.2f} to {corr[most_selective].max():+.2f}."))
vitcourse.seed_everything(0)
untrained = R.build(train_data).to(DEVICE).eval()            # the same model before training
attentions_init = analysis.attention_maps(untrained, images)
distance_init = analysis.mean_attention_distance(attentions_init, untrained).cpu()
selectivity_init = (analysis.attention_entropy(attentions_init).cpu()
                    / math.log(cfg.num_patches + untrained.num_prefix_tokens))
print(f"the same model untrained: mean attention distance {distance_init.min():.1f} to {distance_init.max():.1f} px, "
      f"entropy share {selectivity_init.min():.2f} to {selectivity_init.max():.2f}; trained: {distance.min():.1f} to "
      f"{distance.max():.1f} px, {selectivity.min():.2f} to {selectivity.max():.2f}")

# %% [markdown]
# ## 8. Another resolution: interpolating the position embedding (ViT section 3.2)
#
# Nothing in the encoder depends on the number of tokens; only the position embedding does: it has
# one vector per patch of the *training* grid. To run at another resolution with the same patch size
# (more or fewer patches), the paper performs a "2D interpolation of the pre-trained position
# embeddings" as an image; timm and torchvision (and `vitcourse`) interpolate bicubically, keeping the
# class token's vector. Interpolating to the same grid changes nothing, and a size that is not a
# multiple of the patch size is refused:

# %%
bigger = copy.deepcopy(model).set_image_size(H + cfg.patch_size)
print(f"position embedding {tuple(model.pos_embed.shape)} -> {tuple(bigger.pos_embed.shape)} at {H + cfg.patch_size} px")
same = copy.deepcopy(model).set_image_size(H)
assert torch.allclose(same.pos_embed, model.pos_embed, atol=1e-6)
try:
    copy.deepcopy(model).set_image_size(H + 1)
except ValueError as err:
    print("set_image_size(H + 1):", err)

# %% [markdown]
# ViT section 3.2: "it is often beneficial to fine-tune at higher resolution than pre-training" (the
# paper pre-trains at 224 px and fine-tunes at 384, with the same patch size, so the sequence gets
# longer). The claim compares two fine-tunings of *the same* pre-trained model: one above the
# pre-training resolution, one at it. We pre-train the recipe's ViT at `LOW_SIZE` pixels (the
# images shrunk; a 5x5 grid: on a 4x4 grid 12 of the 16 patches are on the border, too few positions
# for a row/column structure worth interpolating), then fine-tune it for `FT_EPOCHS` at the full
# size (position embedding interpolated) and, from the same weights with the same steps, learning
# rate (`FT_LR`, a tenth of the recipe's) and data order, at `LOW_SIZE`. Each is tested at its own
# resolution on the same test images. One difference from the paper: there, fine-tuning is transfer
# to another, smaller data set, so both arms must adapt; here both arms go on training on the
# pre-training data, so the arm that stays at `LOW_SIZE` simply continues, and only the other
# has something to adapt to.
#
# **ViT 3.2 holds** when the higher-resolution fine-tuning is at least **0.5 points** better, and the
# 95% interval of the difference, paired image by image over the test set, lies above 0. (Paired:
# both models answer the same test images, so the interval is built from each image's difference,
# right minus right, and the luck of which images are hard cancels; its half-width is about 1.96 standard
# errors of that mean difference.) The cell prints where the interval sits: "gain of 0.005 shown" (both
# conditions met), "below the threshold" (even its upper end is under 0.5 points) or "inconclusive" (it reaches
# the bar, and the gain is not shown); FixRes's cell prints the same for its bar. (FixRes's
# table 1 reports +1 to +2 points for testing a ResNet-50 above its training size; half of the
# smallest is an effect a learner would call one. It is a borrowed scale: FixRes measures a related
# effect, the object-size mismatch of zooming crops.) That mismatch works *for* the paper and *against*
# this run. ImageNet pipelines, the reference ViT code's among them, pre-train on zooming random
# crops, in which objects look larger than in the full test image: a higher fine-tuning resolution
# also undoes that mismatch. Our pre-training uses translations only, so the move to the full size
# *creates* a mismatch: every garment covers more patches than anything the model saw, and the
# fine-tuning must undo that first. One pre-training seed: the interval covers the test images'
# sampling noise, not the noise of another training run (section 4's seeds show how large that is).
#
# **Regime**: the claim is about fine-tunings that have adapted to their resolution, so both must be
# near convergence: each test curve (evaluated `FT_EVALS` times during fine-tuning; nothing is
# chosen from it) rose less than **0.5 points** over its last 20% of steps (read from the last
# curve point at or before 80% of the steps to the end: with a few evaluations, that point can sit
# earlier, and the cell names the steps it reads). The arm that moves to a new grid starts far
# lower (its embeddings are interpolated and its patches show the garment at a new scale), so it is
# the one that needs the steps. Where the regime is not reached, the verdict says so and the curves
# show where the arms were heading. A caveat known before the run: the cosine schedule brings the
# learning rate to 0, so a flat end is partly the schedule's doing; the cell prints how low the rate
# already is where the check starts, and the second measurement below asks whether more fine-tuning
# would still move the arm that adapts.
#
# Low-resolution pre-training is also the cheap part (fewer tokens): the compute of each route is
# printed as forward FLOPs per image times images seen.
#
# **Second measurement, stated here because its runs train in the next cell.** Should ViT 3.2
# fail, is the first fine-tuning too gentle? The arm that moves to the new grid starts well below
# the other (the table's "the same, run at full size (interpolated)" row) and must adapt its patch embedding
# and position embedding to patches that show the garment at a new scale; the arm that stays only
# continues training. If the first pair's fine-tuning was too gentle for that (its learning rate
# is a tenth of the recipe's, and its cosine brings it to 0, so a flat end of the curve can mean
# "annealed" as much as "adapted"), the same pair fine-tuned at **5x the learning rate**
# (`FT_LR_HIGH`, half the recipe's; the same steps, data order and test curve) moves the model
# further. **Reading**: when the higher rate closes at least half of what the first pair lacked of
# the claim's +0.5 points, i.e. d_high - d >= (0.005 - d) / 2 for the paired differences d and
# d_high, the result is consistent with a first fine-tuning too gentle for the arm that adapts (the
# convergence check above cannot see that: it reads the curve where the schedule has annealed the
# rate, and a curve at a rate near 0 is flat whether or not the model has adapted). Otherwise this
# measurement does not show the fine-tuning too gentle. The mean decides between the two readings;
# the paired 95% interval of the change d_high - d says how sure either is (when it contains the bar,
# the test images' noise alone could flip the reading), and it leaves out a rerun's noise. It is a
# diagnostic, not a verdict: ViT 3.2 stays judged on the first pair, under the regime check stated
# before it ran; the cell also prints d_high against ViT 3.2's bar. ViT 3.2's own numbers stay those of the first pair, whose settings were
# fixed before it ran. (A higher rate for the same steps costs one more pair; twice the steps, the
# other way to give the adapting arm more, would cost two: that one is exercise 6 at the end.)
#
# **Six trainings, two at a time.** The next cell pre-trains two models at `LOW_SIZE`: this section's,
# with the recipe's translations, and the one FixRes (the end of this section) needs, with zooming
# crops; then it fine-tunes at each size at both learning rates. On a CPU two one-thread trainings
# side by side finish sooner than one after the other on two threads (section 4), so `side_by_side`
# runs them in pairs, in two threads of this process (on a GPU, one after the other). Each starts
# from what it would start from alone: its model is built before the threads start and its loader
# has its own random generator. What can differ is the thread count: on one thread the sums inside a
# matrix product are split differently, and training carries such last-digit differences on, so the
# same run on two threads can end a few tenths of a point away, as a run on another machine does.

# %%
LOW_GRID = budget(smoke=2, cpu=5, gpu=6)                      # the pre-training grid (cfg.grid_size at full size)
LOW_SIZE = cfg.patch_size * LOW_GRID
LOW_EPOCHS = budget(smoke=1, cpu=6, gpu=50)
FT_EPOCHS = budget(smoke=1, cpu=2, gpu=5)
FT_EVALS = budget(smoke=2, cpu=4, gpu=5)                      # points of each fine-tuning curve
FT_STEPS = FT_EPOCHS * len(train_data) // R.batch_size // FT_EVALS * FT_EVALS
FT_LR = R.lr / 10                                             # fine-tuning's peak learning rate
PLATEAU = 0.005


def resolution_config(size, tag, **more):
    """The run's settings, which name its checkpoint folder (a changed knob starts a new run)."""
    return {"recipe": R.to_dict(), "size": size, "tag": tag, "data": train_data.name,
            "train_images": len(train_data), **more}


def pre_training(size, loader, tag, **more):
    """R's ViT at `size` px, built now from seed 0, and the job that trains it for LOW_EPOCHS on `loader`
    (checkpointed by its config, with the settings `more` of `loader` that the tag does not name) and
    returns (model, training seconds)."""
    vitcourse.seed_everything(0)
    net = R.build(train_data, image_size=size)
    config = resolution_config(size, tag, epochs=LOW_EPOCHS, **more)
    checkpoint = run_dir("03_vit_resolution", config) / "checkpoint.pt"

    def job():
        h = fit(net, loader, epochs=LOW_EPOCHS, **R.fit_args(), device=DEVICE, progress=False, checkpoint=checkpoint)
        return net.eval(), sum(e["seconds"] for e in h.epochs)
    return job


def fine_tuning(size, lr=FT_LR):
    """The job that fine-tunes a copy of `low` for FT_STEPS at `size` px (embedding interpolated if needed)
    at peak learning rate `lr`, the same data order at every size; it returns (model, history with a test
    curve)."""
    vitcourse.seed_everything(0)
    net = copy.deepcopy(low).set_image_size(size)
    config = resolution_config(size, "fine-tune", low_size=LOW_SIZE, low_epochs=LOW_EPOCHS, steps=FT_STEPS,
                               evals=FT_EVALS, lr=lr)
    curve = copy.copy(test_loader)   # its own: a loader counts its epochs, and two threads may run at once

    def job():
        h = train_for_steps(R, net, train_data, steps=FT_STEPS, seed=1, evals=FT_EVALS, lr=lr,
                            curve=D.Resized(curve, size) if size != H else curve,
                            resize=size if size != H else None, device=DEVICE,
                            checkpoint=run_dir("03_vit_resolution", config) / "checkpoint.pt")
        return net.eval(), h
    return job


def test_correct(net, size):
    """Per test image, 1 if `net` classifies it right with the images resized to `size` px, else 0."""
    net = copy.deepcopy(net).set_image_size(size) if net.config.image_size != size else net
    preds, targets = predict(net, D.Resized(test_loader, size) if size != H else test_loader)
    return (preds == targets).float()


def plot_fine_tuning(ax, histories, label, ls="-"):
    """Each size's test curve, from its accuracy before fine-tuning (step 0)."""
    for size, marker in ((H, "o"), (LOW_SIZE, "s")):
        h = histories[size]
        ax.plot([0] + [e["step"] for e in h.epochs],
                [acc["low at full, not fine-tuned" if size == H else "low"]] + [e["test_acc"] for e in h.epochs],
                marker=marker, ls=ls, mfc="none" if ls != "-" else None,    # open markers: the second rate
                color="C0" if size == H else "C1", label=label.format(size=size))


augmented = D.DeviceLoader(train_data, R.batch_size, seed=0, device=DEVICE, **R.augment)
CROP_SCALE = (0.35, 1.0)          # FixRes's RandomResizedCrop area range (FixRes uses 0.08-1 on ImageNet)
zoom_loader = D.DeviceLoader(train_data, R.batch_size, seed=0, device=DEVICE,   # no flip: the control has none
                             crop_scale=CROP_SCALE, crop_size=LOW_SIZE)
# Six trainings, two at a time (on a GPU one after the other): the two pre-trainings, then the two
# fine-tunings at each size (first learning rate and 5x).
(low, low_s), (zoom, zoom_s) = side_by_side(pre_training(LOW_SIZE, D.Resized(augmented, LOW_SIZE), "translate"),
                                            pre_training(LOW_SIZE, zoom_loader, "random_resized_crop, no flip",
                                                         crop_scale=list(CROP_SCALE)),
                                            device=DEVICE)
FT_LR_HIGH = 5 * FT_LR
tuned, ft_history, tuned_high, ft_history_high = {}, {}, {}, {}
for size in (H, LOW_SIZE):
    (tuned[size], ft_history[size]), (tuned_high[size], ft_history_high[size]) = side_by_side(
        fine_tuning(size), fine_tuning(size, lr=FT_LR_HIGH), device=DEVICE)
ft_minutes = {s: sum(e["seconds"] for e in ft_history[s].epochs) / 60 for s in (LOW_SIZE, H)}
each = threads_each(2, DEVICE)
print(f"pre-trained at {LOW_SIZE} px ({LOW_GRID}x{LOW_GRID} patches) for {LOW_EPOCHS} epochs in {low_s / 60:.1f} min "
      f"(FixRes's model, with zooming crops, in {zoom_s / 60:.1f}); "
      f"fine-tuned for {FT_STEPS} steps ({FT_EPOCHS} epochs) at {LOW_SIZE} px and at {H} px in "
      f"{ft_minutes[LOW_SIZE]:.1f} and {ft_minutes[H]:.1f} min"
      + (f" (two trainings at a time, on {each} thread{'s' * (each > 1)} each)" if each else ""))

correct = {"native": test_correct(model, H), "low": test_correct(low, LOW_SIZE),
           "low at full, not fine-tuned": test_correct(low, H),
           "fine-tuned low": test_correct(tuned[LOW_SIZE], LOW_SIZE), "fine-tuned full": test_correct(tuned[H], H)}
acc = {k: v.mean().item() for k, v in correct.items()}
flops = {s: analysis.forward_flops(R.build(train_data, image_size=s), (C, s, s)) for s in {LOW_SIZE, H}}
n = len(train_data)
cost = {"native": flops[H] * n * R.epochs, "low": flops[LOW_SIZE] * n * LOW_EPOCHS}
ft_images = FT_STEPS * R.batch_size
cost["fine-tuned low"] = cost["low"] + flops[LOW_SIZE] * ft_images
cost["fine-tuned full"] = cost["low"] + flops[H] * ft_images
rows = [("native", f"section 4: trained at {H} px, {R.epochs} epochs", H),
        ("low", f"pre-trained at {LOW_SIZE} px, {LOW_EPOCHS} epochs", LOW_SIZE),
        ("low at full, not fine-tuned", "the same, run at full size (interpolated)", H),
        ("fine-tuned low", f"+ {FT_EPOCHS} fine-tuning epoch(s) at {LOW_SIZE} px", LOW_SIZE),
        ("fine-tuned full", f"+ {FT_EPOCHS} fine-tuning epoch(s) at {H} px", H)]
print(f"{'model':46s} {'test px':>7s} {'test acc':>8s} {'compute (share of native)':>26s}")
for key, label, px in rows:
    c = cost.get(key, cost["low"])
    print(f"{label:46s} {px:7d} {acc[key]:8.4f} {c / cost['native']:26.0%}")
print(f"(compute: forward FLOPs per image, {flops[LOW_SIZE] / 1e6:.1f} M at {LOW_SIZE} px and {flops[H] / 1e6:.1f} M at "
      f"{H} px, times images seen; a training step costs about three forward passes at both sizes)")
# What is interpolated: the pre-trained embedding's structure on its own grid, by section 6's statistics.
low_sim = analysis.position_embedding_similarity(low)
low_null = analysis.random_embedding_shares(LOW_GRID, cfg.dim, draws=1000, seed=0)
print(f"The {LOW_SIZE}-px model's position embedding on its {LOW_GRID}x{LOW_GRID} grid: grid-neighbour share "
      f"{analysis.grid_neighbour_share(low_sim):.2f} (random embeddings: mean {low_null['grid_neighbour_share'].mean():.2f}, "
      f"99.9th percentile {low_null['grid_neighbour_share'].quantile(0.999):.2f}), row/column share "
      f"{analysis.row_column_share(low_sim):.2f} (random: mean {low_null['row_column_share'].mean():.2f}, 99.9th "
      f"percentile {low_null['row_column_share'].quantile(0.999):.2f}): the structure the interpolation carries to "
      f"the {cfg.grid_size}x{cfg.grid_size} grid.")

ft_steps = [e["step"] for e in ft_history[H].epochs]
ft_regime = regime(ft_steps,
                   {f"fine-tuned at {size} px": [e["test_acc"] for e in ft_history[size].epochs] for size in (H, LOW_SIZE)},
                   PLATEAU)
check_from = ft_regime.window[0] if ft_regime.window else 0    # the steps the convergence check reads from


def mark_check(ax):
    """The native model's accuracy and the steps the convergence check reads."""
    ax.axhline(acc["native"], color="gray", ls=":", label=f"section 4's model, trained at {H} px")
    ax.axvspan(check_from, FT_STEPS, color="0.9", label="the convergence check (its rise)")


fig, ax = plt.subplots(figsize=(6.5, 3.8))
plot_fine_tuning(ax, ft_history, "fine-tuned at {size} px (step 0: before fine-tuning)")
mark_check(ax)
ax.set(xlabel="fine-tuning step", ylabel="test accuracy",
       title=f"Fine-tuning the {LOW_SIZE}-px model at {H} px and at {LOW_SIZE} px")
ax.legend(fontsize=8)
plt.show()
print(ft_regime.report("ViT 3.2"))
lr_left = next((e["lr"] for e in ft_history[H].epochs if e["step"] == check_from), FT_LR) / FT_LR
print(f"(The check reads steps {check_from} to {FT_STEPS}, where the cosine schedule has already brought the learning "
      f"rate down to {lr_left:.0%} of its peak and then to 0: a flat end there is partly the schedule's doing. For "
      f"scale, two accuracies near {acc['fine-tuned full']:.2f} on independent sets of {len(test_data):,} images differ "
      f"by about {rise_noise(acc['fine-tuned full'], len(test_data)):.4f} (one standard deviation); two points of one "
      f"curve, on the same images, by less.)")
vit32 = paired(correct["fine-tuned full"].tolist(), correct["fine-tuned low"].tolist())
print(f"fine-tuned at {H} px minus fine-tuned at {LOW_SIZE} px: {vit32.mean:+.4f}, 95% interval "
      f"{vit32.mean - vit32.half_width:+.4f} to {vit32.mean + vit32.half_width:+.4f} over {vit32.n:,} test images: "
      f"{vit32.judge(0.005)}")
def points(d):
    """A difference of two accuracies, in percentage points."""
    return f"{100 * d:+.2f} points"


print(f"Plainly: the {LOW_SIZE}-px model alone scores {acc['low']:.2%} for {cost['low'] / cost['native']:.0%} of the "
      f"native model's compute ({points(acc['low'] - acc['native'])} from it). Fine-tuning it at {H} px, above its "
      f"pre-training resolution, gives {acc['fine-tuned full']:.2%}; the same steps at {LOW_SIZE} px give "
      f"{acc['fine-tuned low']:.2%}. Run at {H} px with interpolated embeddings and no fine-tuning it has "
      f"{acc['low at full, not fine-tuned']:.2%}: the move to {H} px (a new grid, and the garment at a new scale) costs "
      f"{100 * (acc['low'] - acc['low at full, not fine-tuned']):.1f} points at first, and the fine-tuning wins back "
      f"{100 * (acc['fine-tuned full'] - acc['low at full, not fine-tuned']):.1f} of them; "
      + ("it ends above the model that stayed at its resolution." if acc["fine-tuned full"] > acc["fine-tuned low"]
         else f"it has not caught up with the model that stayed at {LOW_SIZE} px "
              f"({'the curve above is still rising' if not ft_regime.converged else 'and its curve has flattened'}).")
      + (f" It even ends below the {LOW_SIZE}-px model before any fine-tuning ({acc['low']:.2%}). Section 4's model "
         f"({H} px from the start, {R.epochs} epochs against {LOW_EPOCHS}) is {points(acc['native'] - acc['low'])} above "
         f"the {LOW_SIZE}-px model, but this run does not separate its resolution from its longer training."
         if acc["fine-tuned full"] < acc["low"] < acc["native"] else ""))

# %% [markdown]
# In the figure above: the blue arm starts far below (the interpolated model at step 0), climbs
# quickly and flattens in the grey band, where the convergence check reads it; the orange arm starts
# where its pre-training ended and hardly moves. The gap at the right end is what ViT 3.2 judges.
#
# ### Is the first fine-tuning too gentle? The same pair at a higher learning rate
#
# The second measurement stated before the training cell: the same pair fine-tuned at 5x the
# learning rate (`FT_LR_HIGH`), trained in that cell beside the first pair. Its reading, as stated
# there: a change d_high - d of at least (0.005 - d) / 2 is consistent with a first fine-tuning too
# gentle for the arm that adapts, a smaller one does not show it, and the paired 95% interval of the
# change says how sure either reading is. A diagnostic: ViT 3.2 stays judged on the first pair.

# %%
correct_high = {size: test_correct(tuned_high[size], size) for size in (LOW_SIZE, H)}
vit32_high = paired(correct_high[H].tolist(), correct_high[LOW_SIZE].tolist())
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for histories, lr, ls in ((ft_history, FT_LR, "-"), (ft_history_high, FT_LR_HIGH, "--")):
    plot_fine_tuning(ax, histories, f"at {{size}} px, peak learning rate {lr:.0e}", ls)
mark_check(ax)
end_accs = [e["test_acc"] for h in (ft_history, ft_history_high) for size in h for e in h[size].epochs]
ax.set_ylim(min(end_accs) - 0.01, max(end_accs + [acc["native"]]) + 0.005)   # the region where the arms end
ax.set(xlabel="fine-tuning step", ylabel="test accuracy",
       title=f"Fine-tuning the {LOW_SIZE}-px model at two learning rates\n(the {H}-px arms start at "
             f"{acc['low at full, not fine-tuned']:.2f}, below the axis)")
ax.legend(fontsize=8, handlelength=3.5, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
plt.show()
high_regime = regime(ft_steps, {f"at {size} px": [e["test_acc"] for e in ft_history_high[size].epochs]
                                for size in (H, LOW_SIZE)}, PLATEAU)
print(high_regime.report(f"the pair at learning rate {FT_LR_HIGH:.0e}"))
closed_needed = (0.005 - vit32.mean) / 2
# The change of the difference, per test image: (high-rate 28 px - high-rate 20 px) - (28 px - 20 px).
change = paired((correct_high[H] - correct_high[LOW_SIZE]).tolist(),
                (correct["fine-tuned full"] - correct["fine-tuned low"]).tolist())
gentle = vit32.mean < 0.005 and change.mean >= closed_needed
undecided = change.mean - change.half_width <= closed_needed <= change.mean + change.half_width
moved = {size: correct_high[size].mean().item() - acc["fine-tuned full" if size == H else "fine-tuned low"]
         for size in (H, LOW_SIZE)}
print(f"{H} px minus {LOW_SIZE} px: {points(vit32.mean)} at learning rate {FT_LR:.0e}, {points(vit32_high.mean)} at "
      f"{FT_LR_HIGH:.0e}; fine-tuned at {H} px: {acc['fine-tuned full']:.2%} -> {correct_high[H].mean().item():.2%} "
      f"({points(moved[H])}), at {LOW_SIZE} px: {acc['fine-tuned low']:.2%} -> "
      f"{correct_high[LOW_SIZE].mean().item():.2%} ({points(moved[LOW_SIZE])}). The change of the difference: "
      f"{points(change.mean)}, 95% interval {100 * (change.mean - change.half_width):+.2f} to "
      f"{100 * (change.mean + change.half_width):+.2f} (paired over the test images); the rule needs "
      f"{100 * closed_needed:+.2f}.")
sure = (f"the change's 95% interval, {100 * (change.mean - change.half_width):+.2f} to "
        f"{100 * (change.mean + change.half_width):+.2f} points, "
        + ("contains the bar, so the test images' sampling noise alone could put it on the other side" if undecided
           else "lies on one side of the bar")
        + f" (it covers the test images' noise, not a rerun's: section 4's two seeds ended "
          f"{100 * (max(accs) - min(accs)):.2f} points apart)")
if vit32.mean >= 0.005:
    why_vit32 = "the first pair already shows the gain; the higher rate is a check that it is not an accident of the rate"
elif gentle:
    why_vit32 = (f"at 5x the rate the {H}-px arm gains {points(moved[H])} and the {LOW_SIZE}-px "
                 f"arm {points(moved[LOW_SIZE])}, so the gap shrinks from {points(vit32.mean)} to "
                 f"{points(vit32_high.mean)}; the change, {points(change.mean)}, closes "
                 f"{change.mean / (0.005 - vit32.mean):.0%} of what the first pair lacked (the rule asks 50%): "
                 f"consistent with a first fine-tuning too gentle for the arm that changes grid, though the gap is "
                 f"still negative; {sure}")
else:
    why_vit32 = (f"the higher rate does not show a too-gentle fine-tuning: the change of the difference, "
                 f"{points(change.mean)}, closes {change.mean / (0.005 - vit32.mean):.0%} of what the first pair "
                 f"lacked (the rule asks 50%); at 5x the rate the {H}-px arm moves {points(moved[H])} and the "
                 f"{LOW_SIZE}-px arm {points(moved[LOW_SIZE])}; {sure}")
high_line = (f"{H} px minus {LOW_SIZE} px at 5x the rate: {points(vit32_high.mean)}, 95% interval "
             f"{100 * (vit32_high.mean - vit32_high.half_width):+.2f} to {100 * (vit32_high.mean + vit32_high.half_width):+.2f}"
             f" points: " + ("ViT 3.2's bar (+0.50, interval above 0) is met at this rate"
                             if vit32_high.mean >= 0.005 and vit32_high.mean - vit32_high.half_width > 0 else
                             "ViT 3.2's bar (+0.50, interval above 0) is not met at this rate either"
                             if vit32.mean < 0.005 else "ViT 3.2's bar (+0.50, interval above 0) is not met at this rate"))
print("Reading:", why_vit32 + ".")
print(high_line)

# %% [markdown]
# What to see: the solid curves are the first pair, the dashed ones (open markers) the same pair at 5x the
# learning rate; blue is the arm fine-tuned at the full size, orange the one that stayed at
# `LOW_SIZE`. Compare, at the right end, how far each blue curve ends below its orange partner, and
# whether a curve is still climbing in the grey band, where the convergence check reads it.

# %% [markdown]
# ### FixRes: testing above the training resolution
#
# **FixRes** (Touvron et al. 2019): the usual training crop, *RandomResizedCrop*, cuts a random part
# of the image (here 35-100% of its area) and resizes it to the training size, so objects look
# *larger* in training than in the full test image at the same size. Testing at a somewhat higher
# resolution than training undoes the mismatch. We trained at `LOW_SIZE` with RandomResizedCrop and
# test at `LOW_SIZE` and above; the `LOW_SIZE` model of the cell above, trained as long with
# translations only (no zoom), is the control. **FixRes holds** when testing one patch more per side
# is at least **0.2 points** better than testing at the training size for the RandomResizedCrop model,
# and the 95% interval of that difference, paired image by image over the test set, lies above 0
# (FixRes, table 1: +1 to +2 points for a ResNet-50 tested above its training size). One training
# seed: the interval covers the test images' sampling noise, not the noise of another training run. The bar is
# lower than ViT 3.2's 0.5 because this change costs no training at all: testing at another size is
# free, so a smaller gain is still worth having. Its model was pre-trained at the start of this
# section, beside the control (the same epochs, data order and initial weights).
# Known before the run, and against FixRes here: nothing is fine-tuned at the larger test size
# (FixRes itself fine-tunes there), so a test one patch row larger also pays for position embeddings
# interpolated and never trained, a cost section 8's table shows at 28 px (its "(interpolated)"
# row). That cost may outweigh any size-mismatch gain, so a NO on this test can come from it: the
# zoom below, on the training grid, is the second measurement for that reason.
# (Testing the control, trained without zooming crops, at a larger size makes each garment larger
# in pixels than anything it saw in training: that creates the size mismatch FixRes removes, so the
# control is expected to lose.)
#
# A higher test resolution does two things to a ViT: it makes the object larger in pixels (what
# FixRes wants) and it adds patches whose position embeddings are interpolated (what a CNN does not
# have). A second measurement looks at the first alone: keep the training resolution and grid, and zoom
# instead: cut the central part of each test image and resize it to `LOW_SIZE`. The object then
# looks as large as in training, with no interpolated embedding. If FixRes's premise holds here, some
# zoom below the whole image (1.0) is best for the RandomResizedCrop model and not for the control.
# The cell also reads the zoom nearest to what one patch row more does to the object's size (in the
# cpu profile 0.8 of the side, 1.25x, against 1.2x for 20 to 24 px). A zoom is not the same change
# as a higher resolution, though: it also cuts off the image's border, which the higher resolution
# keeps, so a loss from zooming can come from the lost border as much as from a missing size
# mismatch: it tests FixRes's premise, though not cleanly, and does not split the
# higher-resolution loss in two.

# %%
TEST_SIZES = [LOW_SIZE + k * cfg.patch_size for k in range(4) if LOW_SIZE + k * cfg.patch_size <= H]
fixres_correct = {name: [test_correct(net, s) for s in TEST_SIZES]
                  for name, net in (("RandomResizedCrop", zoom), ("translations only", low))}
fixres = {name: [c.mean().item() for c in cs] for name, cs in fixres_correct.items()}
fig, ax = plt.subplots(figsize=(6, 3.5))
for (name, accs_s), marker in zip(fixres.items(), "os"):
    ax.plot(TEST_SIZES, accs_s, marker=marker, label=f"trained at {LOW_SIZE} px with {name}")
ax.axvline(LOW_SIZE, color="gray", ls=":", label="training resolution")
ax.set(xlabel="test resolution (px)", ylabel="test accuracy", title="Testing at and above the training resolution",
       xticks=TEST_SIZES)
ax.legend(fontsize=8)
plt.show()
for name, accs_s in fixres.items():
    print(f"{name:20s} " + "  ".join(f"{s} px {a:.4f}" for s, a in zip(TEST_SIZES, accs_s)))
# One patch more per side against the training size, image by image (the judged difference).
fixres_gain = paired(*(c.tolist() for c in fixres_correct["RandomResizedCrop"][1::-1]))
zoom_gain = fixres_gain.mean
plain_gain = fixres["translations only"][1] - fixres["translations only"][0]
print(f"RandomResizedCrop model, {TEST_SIZES[1]} px minus {LOW_SIZE} px: {fixres_gain.mean:+.4f}, 95% interval "
      f"{fixres_gain.mean - fixres_gain.half_width:+.4f} to {fixres_gain.mean + fixres_gain.half_width:+.4f} over "
      f"{fixres_gain.n:,} test images: {fixres_gain.judge(0.002)}")
apparent = sum((a ** 0.5) for a in torch.linspace(*CROP_SCALE, 101).tolist()) / 101
print(f"A crop covers on average {apparent:.2f} of the image's side, so in training an object looks "
      f"{1 / apparent:.2f}x larger than in the whole image at {LOW_SIZE} px: FixRes's argument puts the best test "
      f"size near {LOW_SIZE / apparent:.0f} px. One patch row more at test ({TEST_SIZES[1]} px): {points(zoom_gain)} "
      f"for the RandomResizedCrop model, {points(plain_gain)} for the control trained without zoom.")


def zoomed_test_loader(fraction, size):
    """The test images' central `fraction` of the side, resized to `size` px (the object looks 1/fraction larger)."""
    c = round(H * fraction)
    a = (H - c) // 2
    return [(F.interpolate(x[..., a:a + c, a:a + c], size=(size, size), mode="bicubic", antialias=True), y)
            for x, y in test_loader]


FRACTIONS = [1.0, 0.9, 0.8, 0.7]
zoomed = {name: [evaluate(net, zoomed_test_loader(f, LOW_SIZE))["acc"] for f in FRACTIONS]
          for name, net in (("RandomResizedCrop", zoom), ("translations only", low))}
for name, accs_f in zoomed.items():
    print(f"{name:20s} at {LOW_SIZE} px, central share of the side: "
          + "  ".join(f"{f:.1f}: {a:.4f}" for f, a in zip(FRACTIONS, accs_f)))
best = {name: FRACTIONS[max(range(len(FRACTIONS)), key=accs_f.__getitem__)] for name, accs_f in zoomed.items()}
# The zoom closest to what one patch row more does to the garment's size (20 -> 24 px: 1.2x, a share 1/1.2).
k = min(range(len(FRACTIONS)), key=lambda i: abs(FRACTIONS[i] - LOW_SIZE / TEST_SIZES[1]))
zoom_part = {name: accs_f[k] - accs_f[0] for name, accs_f in zoomed.items()}
print(f"Best zoom: {best['RandomResizedCrop']:.1f} of the side for the RandomResizedCrop model, "
      f"{best['translations only']:.1f} for the control.")
print(f"Zoom {FRACTIONS[k]:.1f} (the garment {1 / FRACTIONS[k]:.2f}x larger on the training grid, near the "
      f"{TEST_SIZES[1] / LOW_SIZE:.2f}x of {TEST_SIZES[1]} px): {points(zoom_part['RandomResizedCrop'])} for the "
      f"RandomResizedCrop model, {points(zoom_part['translations only'])} for the control.")
print("Reading: " + (
    "zooming in helps only the model trained with zooming crops, as FixRes's train-test size mismatch predicts."
    if best["RandomResizedCrop"] < 1.0 <= best["translations only"] else
    "zooming in helps neither model, so this test does not show the size mismatch FixRes removes (objects looking "
    "too small at test after zooming crops); it cannot tell a missing mismatch from a lost outline either, since a "
    "central zoom also cuts off the garment's border"
    + (f". The zooming crops did teach tolerance of zoomed-in, cut views: at zoom {FRACTIONS[k]:.1f} the RandomResizedCrop model "
       f"changes by {points(zoom_part['RandomResizedCrop'])}, the control by {points(zoom_part['translations only'])}"
       if zoom_part["RandomResizedCrop"] > zoom_part["translations only"] else "")
    + ". A likely reason, not measured here: Fashion-MNIST's garments are centred and fill the frame, so a central "
      "zoom cuts off their outline (sleeves, hems), while ImageNet's objects sit in background that a zoom can cut away without losing the object. "
      f"Also, unlike FixRes's own recipe, nothing here is fine-tuned at {TEST_SIZES[1]} px, so that test also pays for "
      "position embeddings interpolated and never trained (section 8 measured what a new grid without fine-tuning costs at 28 px)."))

# %% [markdown]
# What to see in the resolution figure: both lines start at the training resolution (dotted). FixRes
# predicts that the RandomResizedCrop line rises to the right of it, at least one patch row up, and
# that the control falls; the printed differences and their intervals are what is judged.

# %% [markdown]
# ## 9. What the ViT does not know: inductive bias
#
# Chapter 00's CNN builds in assumptions about images (source 004): **locality** (a 3x3 kernel looks at
# neighbours only), the **2-D neighbourhood structure**, and **translation equivariance** (shift the
# input, the feature map shifts). The ViT paper (section 3.1) says how little of that a ViT keeps:
# "only MLP layers are local and translationally equivariant, while the self-attention layers are
# global". The MLP acts on each token alone, the same weights at every position, so it is local (one
# patch) and equivariant to moving whole patches. The 2-D neighbourhood structure is used "very
# sparingly": when the image is cut into patches, and when the position embeddings are interpolated
# for another resolution (section 8). Self-attention without positions is *permutation*-equivariant:
# it treats the patches as a set, so nothing makes near patches matter more than far ones. And the
# learned absolute position embedding, added to each patch, breaks translation equivariance: a
# shifted object meets other position vectors. Everything the ViT knows about where patches are
# comes from that embedding, which starts random and is learned from data (section 6).
#
# A direct way to see it: remove the position embedding and shuffle the patches. The model cannot
# tell the difference: its output is the same up to floating-point rounding (a bag of patches).

# %%
bag = copy.deepcopy(model).eval()
with torch.no_grad():
    bag.pos_embed.zero_()
    x = images[:8]
    perm = torch.randperm(cfg.num_patches)
    # Shuffle the patches: cut into the grid, permute, put back.
    grid = rearrange(x, "b c (gh p1) (gw p2) -> b c (gh gw) p1 p2", p1=cfg.patch_size, p2=cfg.patch_size)
    shuffled = rearrange(grid[:, :, perm], "b c (gh gw) p1 p2 -> b c (gh p1) (gw p2)", gh=cfg.grid_size)
    same = (bag(x) - bag(shuffled)).abs().max().item()
    changed = (model(x) - model(shuffled)).abs().max().item()
print(f"without position embedding: max logit change {same:.2e} | with it: {changed:.2e}")
assert same < 1e-5 and changed > 100 * same  # invariant without positions, not with them
fig, ax = plt.subplots(1, 2, figsize=(5, 2.6))
for a, img, t in zip(ax, (x[0], shuffled[0]), ("image", "patches shuffled")):
    a.imshow(analysis.to_display(img.cpu(), mean, std), cmap="gray" if C == 1 else None)
    a.set(title=t, xticks=[], yticks=[])
fig.suptitle("the same input to a ViT without position embedding")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### On shifted images, against the ResNet
#
# Shift the test images by 1 to 4 pixels (the object moves right, black fills in). A convolution is
# equivariant to such shifts by construction (nearly, in a ResNet: its stride-2 stages and zero
# padding break it a little), and the ResNet's global average pool makes its output
# nearly invariant; the ViT only knows the shifts it was shown. The two were not shown the same
# shifts: each keeps its own chapter's recipe (printed below), so the plot marks both training
# ranges, and a difference inside the ViT's range cannot be put down to the training shifts. With
# 4-pixel patches, a shift of 4 pixels moves every patch's content exactly one patch over: the
# patches the ViT sees are the same as before (except the edge columns: the rightmost one is lost and
# a black one comes in on the left), and only the position embedding each one meets has
# changed (section 6).

# %%
def shifted(data, k):
    """`data` with every image moved k pixels to the right (zeros fill in from the left)."""
    images_k = torch.zeros_like(data.images)
    images_k[..., k:] = data.images[..., :data.images.shape[-1] - k]
    return dataclasses.replace(data, images=images_k)


SHIFTS = [0, 1, 2, 3, 4]
shift_acc = {name: [evaluate(net, D.DeviceLoader(shifted(test_data, k), 500, shuffle=False, device=DEVICE))["acc"]
                    for k in SHIFTS] for name, net in (("ViT", model), (R_CNN.model, cnn))}
trained_shift = {"ViT": R.augment.get("crop_padding", 0), R_CNN.model: R_CNN.augment.get("crop_padding", 0)}
fig, ax = plt.subplots(figsize=(6, 3.5))
for (name, accs_k), marker, colour in zip(shift_acc.items(), "os", ("tab:blue", "tab:orange")):
    ax.plot(SHIFTS, accs_k, marker=marker, color=colour, label=name)
    ax.axvline(trained_shift[name] + 0.03 * (colour == "tab:orange"), color=colour, ls=":",
               label=f"largest shift in the {name}'s training ({trained_shift[name]} px)")
ax.set(xlabel="shift of the test images (pixels)", ylabel="test accuracy", title="Accuracy on shifted test images",
       xticks=SHIFTS)
ax.legend(fontsize=8)
plt.show()
for name, accs_k in shift_acc.items():
    print(f"{name:10s} " + "  ".join(f"{k} px {a:.4f}" for k, a in zip(SHIFTS, accs_k)))
drop = {name: accs_k[0] - accs_k[-1] for name, accs_k in shift_acc.items()}
both = min(trained_shift.values())
within = {name: accs_k[0] - accs_k[both] for name, accs_k in shift_acc.items()}
either = max(trained_shift.values())                # beyond it, a shift neither model was trained on
outside = {name: (accs_k[either], accs_k[-1]) for name, accs_k in shift_acc.items()}
print(f"From 0 to {SHIFTS[-1]} px (a shift of {SHIFTS[-1] / cfg.patch_size:g} patch) the ViT loses {100 * drop['ViT']:.1f} "
      f"percentage points of accuracy and the ResNet {100 * drop[R_CNN.model]:.1f}. Within the shifts both were "
      f"trained on (up to {both} px) they lose: ViT {100 * within['ViT']:.1f}, ResNet {100 * within[R_CNN.model]:.1f} "
      "points (a negative loss is a gain). "
      f"Training shifts: ViT up to {trained_shift['ViT']} px, ResNet up to {trained_shift[R_CNN.model]} px"
      f"{' with flips' if R_CNN.augment.get('flip') else ''}.")
if either < SHIFTS[-1]:
    print(f"From the larger training shift ({either} px) to {SHIFTS[-1]} px: "
          + ", ".join(f"{name} {a:.2%} -> {b:.2%} ({points(b - a)})" for name, (a, b) in outside.items()) + ".")

# %% [markdown]
# What to see: the dotted lines mark the largest shift each model was trained on. The fair
# comparison is to the right of both lines, at shifts neither model saw in training: there, what
# each keeps is what its architecture gives it (the last line above prints both). The expectation
# from section 9: a convolution's translation equivariance carries over to shifts it never saw,
# while the ViT knows only the shifts its augmentation showed it.
#
# The price of learning the inductive bias from data is paid in data, once, in pre-training. The ViT paper's
# transfer table (source 003, table 2) shows the other side: with enough data (JFT-300M), ViT-H/14
# reaches 88.55% on ImageNet and 99.50% on CIFAR-10 for **2.5k TPUv3-core-days** of pre-training,
# against BiT-L (a ResNet-152x4) at 87.54% and 99.37% for **9.9k**: about a quarter of the compute for
# a better model (the paper reports the cost; it does not measure why it is lower).
# Chapter 04 measures how much data that takes.

# %% [markdown]
# ## 10. Claims
#
# The thresholds were stated in each section before its measurement: C3a (section 6) a grid-neighbour
# share of at least 0.5 and a row/column share above the 99.9th percentile of random embeddings, for
# every trained seed, with the initial embedding passing neither; C3b (section 7) a smallest early
# head distance at most half the largest, for every trained seed; C3c (section 4, a course target) the
# mean test accuracy over seeds at the target (90% on Fashion-MNIST in the cpu profile, 85% on
# CIFAR-10 in the gpu one); ViT 3.2 (section 8) the higher-resolution fine-tuning at least 0.5
# points better, its per-image 95% interval above 0, in its regime (each fine-tuning curve rose less
# than 0.5 points at its end), with a second measurement at 5x the learning rate read by the rule
# stated there; FixRes (section 8) one patch more per side at test at least 0.2 points
# better, its per-image 95% interval above 0.

# %%
def passes_c3a(st):
    return st["neighbour"] >= T_NEIGHBOUR and st["row_column"] > T_ROW_COLUMN


def passes_either(st):
    """True when an embedding passes at least one of the two statistics (the initial one must pass neither)."""
    return st["neighbour"] >= T_NEIGHBOUR or st["row_column"] > T_ROW_COLUMN


claims = Claims("03_vision_transformer")
claims.add("C3a", "learned position embeddings show 2-D row/column structure",
           measured=("grid-neighbour share " + ", ".join(f"{st['neighbour']:.2f}" for st in structures.values())
                     + f" (seeds {', '.join(map(str, structures))}; needs >= {T_NEIGHBOUR}, chance "
                     f"{null['grid_neighbour_share'].mean():.2f}); row/column share "
                     + ", ".join(f"{st['row_column']:.2f}" for st in structures.values())
                     + f" (needs > {T_ROW_COLUMN:.2f}, chance {null['row_column_share'].mean():.2f}); at "
                     f"initialisation {structure_init['neighbour']:.2f} and {structure_init['row_column']:.2f}. Seed 0's "
                     f"mean similarity: same row {structure['same_row']:+.2f}, same column {structure['same_column']:+.2f}, "
                     f"elsewhere {structure['elsewhere']:+.2f}: mainly along {stronger}s; by distance, neighbours "
                     f"{by_dist[0]:+.2f}, lowest {min(by_dist):+.2f}, farthest pairs {by_dist[-1]:+.2f}"
                     + (f". Second measurement, the content baseline (how often two patches show the same thing, "
                        f"scored as a similarity): grid-neighbour share {content_share:.2f}, row/column share "
                        f"{content_rc:.2f}; the embeddings' neighbour shares are "
                        f"{'above' if more_grid else 'not above'} it, their row/column shares "
                        f"{'above' if more_rc else 'not above'} it; background varies most across the "
                        f"{varies}s" + (f", consistent with same-{stronger} patches being the more alike"
                                        if stronger == varies else "")
                        if C == 1 else "")),
           holds=all(passes_c3a(st) for st in structures.values()) and not passes_either(structure_init))
claims.add("C3b", "early layers mix local and global heads",
           measured=("" if c3b_regime else
                     f"regime not reached (the paper's local early heads come with large-scale pre-training, Raghu et "
                     f"al. 2021: this is {len(train_data):,} {DATASET} images, not more than ImageNet-1k's "
                     f"{REGIME_IMAGES:,}): ")
                    + "; ".join(f"seed {seed}: layers 1-2 heads {d[:2].min():.1f} to {d[:2].max():.1f} px"
                                for seed, d in distances.items())
                    + f" (needs smallest <= 0.5 x largest; uniform attention {uniform:.1f} px); seed 0 weight-distance "
                      f"correlation {corr[:2].min():+.2f} to {corr[:2].max():+.2f}",
           holds=all(d[:2].min() <= 0.5 * d[:2].max() for d in distances.values()))
if TARGET_ACC is not None:
    lo_acc, hi_acc = mean_acc - to_target.half_width, mean_acc + to_target.half_width
    interval = (f"95% interval {lo_acc:.2%} to {hi_acc:.2%}"
                + (f", which contains the target: more seeds could change the verdict" if lo_acc <= TARGET_ACC <= hi_acc
                   else "") if len(accs) > 1 else "one seed: no interval")
    claims.add("C3c", f"course target (not a paper claim): a ViT trained from scratch on {DATASET} reaches "
               f"{TARGET_ACC:.0%} test accuracy",
               measured=(f"mean {mean_acc:.2%} over {len(accs)} seeds ({', '.join(f'{a:.2%}' for a in accs)}), "
                         f"{interval}; {R.epochs} epochs, {n_params / 1e3:.0f}k parameters; training-batch against "
                         f"test accuracy {fit_line}: "
                         + ("no sign of over-fitting (less than 2 points)" if no_overfit else "over-fitting (2 points or more)")
                         + "; second measurement, on 10,000 un-augmented training images: "
                         + ", ".join(f"{seen_acc[s]:.2%}" for s in seed_models)
                         + ": " + fit_reading
                         + f". Chapter 00's ResNet: {cnn_acc:.2%} in {R_CNN.epochs} epochs"),
               holds=mean_acc >= TARGET_ACC)
claims.add("ViT 3.2", "fine-tuning at a higher resolution than pre-training beats fine-tuning at it",
           measured=ft_regime.note(
               f"pre-trained at {LOW_SIZE} px, then {FT_STEPS} steps ({FT_EPOCHS} epochs) of continued training on the "
               f"same data at peak learning rate {FT_LR:.0e}: at {H} px {acc['fine-tuned full']:.2%}, at {LOW_SIZE} px "
               f"{acc['fine-tuned low']:.2%} ({points(vit32.mean)}, 95% interval over test images "
               f"{100 * (vit32.mean - vit32.half_width):+.2f} to {100 * (vit32.mean + vit32.half_width):+.2f}; needs "
               f">= +0.50 points). The {LOW_SIZE}-px model alone: {acc['low']:.2%} for "
               f"{cost['low'] / cost['native']:.0%} of the native model's compute (native: {acc['native']:.2%}). "
               f"Second measurement, 5x the fine-tuning rate: " + why_vit32 + "; " + high_line
               + ("; NO at both rates" if vit32.mean < 0.005 and vit32_high.mean < 0.005 else "")),
           holds=vit32.mean >= 0.005 and vit32.mean - vit32.half_width > 0)
claims.add("FixRes", "after RandomResizedCrop training, a test resolution above the training one is better",
           measured=(f"trained at {LOW_SIZE} px: tested at {LOW_SIZE} px {fixres['RandomResizedCrop'][0]:.2%}, "
                     f"at {TEST_SIZES[1]} px {fixres['RandomResizedCrop'][1]:.2%} ({points(zoom_gain)}, 95% interval "
                     f"over test images {100 * (fixres_gain.mean - fixres_gain.half_width):+.2f} to "
                     f"{100 * (fixres_gain.mean + fixres_gain.half_width):+.2f}; needs >= +0.20 points and the "
                     f"interval above 0; it "
                     + ("lies above 0" if fixres_gain.mean - fixres_gain.half_width > 0 else
                        "lies wholly below 0" if fixres_gain.mean + fixres_gain.half_width < 0 else "reaches 0")
                     + f"; control without zoom {points(plain_gain)}). Second measurement, the same zoom on the "
                       f"training grid, zoom {FRACTIONS[k]:.1f}: {points(zoom_part['RandomResizedCrop'])} (control "
                       f"{points(zoom_part['translations only'])}); best zoom {best['RandomResizedCrop']:.1f} of the side"
                     + ("" if best["RandomResizedCrop"] < 1.0 else ": zooming in does not help, so this test does not "
                        "show the size mismatch FixRes removes; a central zoom also cuts off the garment's border, so it "
                        "cannot tell a missing mismatch from a lost outline")),
           holds=zoom_gain >= 0.002 and fixres_gain.mean - fixres_gain.half_width > 0)
claims.show()

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
# * `ex.num_patches.hint()` prints a hint, another on each call;
# * `ex.num_patches.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch03 as ex

# %% tags=["exercise"]
def num_patches(image_size, patch_size):
    """N = HW / P^2 for a square image of side `image_size` cut into `patch_size` x `patch_size`
    patches (an int)."""
    raise NotImplementedError("write num_patches, then run this cell")


ex.num_patches.check(num_patches)

# %% tags=["exercise"]
def patchify(images, patch_size):
    """(B, C, H, W) -> (B, N, P*P*C): steps 1-2 of section 1, patches in row-major order, each flattened as
    (pixel row, pixel column, channel), like `vitcourse.models.vit.patchify`."""
    raise NotImplementedError("write patchify, then run this cell")


ex.patchify.check(patchify)

# %% tags=["exercise"]
def prepend_class_token(tokens, cls_token):
    """(B, N, D) patch embeddings and a (1, 1, D) class token -> (B, N + 1, D), the class token first (eq. 1)."""
    raise NotImplementedError("write prepend_class_token, then run this cell")


ex.prepend_class_token.check(prepend_class_token)

# %% tags=["exercise"]
# A value this time: how many tokens (patches and class token) does ViT-B/16 process when it is
# fine-tuned at 384 x 384 pixels (section 8), with its patch size unchanged? Work it out, then put it in.
tokens_at_384 = None

ex.tokens_at_384.check(tokens_at_384)

# %% [markdown]
# ## More exercises (experiments to run)
#
# 1. Train with `pool="mean"` (average the patch tokens, no class token read-out). Does accuracy
#    change? Does the attention rollout from the class token still make sense?
# 2. Halve the patch size. How do $N$, the training time per epoch and the accuracy change? Which
#    term of the cost, $O(N D^2)$ or $O(N^2 D)$, grows faster?
# 3. Freeze the position embedding at zero (`model.pos_embed.requires_grad_(False)` after zeroing)
#    and train. How much accuracy does the bag of patches lose on this data set?
# 4. Replace the learned position embedding by the fixed one of section 6
#    (`analysis.sincos_2d_embedding`) and train. Compare the accuracy and the two structure statistics.
# 5. FixRes on ImageNet crops 8-100% of the area; section 8 crops 35-100% (`CROP_SCALE`). Set
#    `CROP_SCALE = (0.08, 1.0)` in section 8's first cell and re-run it and the FixRes cells: by FixRes's argument (printed there),
#    where should the best test size move, and does it?
# 6. Section 8's second measurement gave the arm that adapts a higher learning rate. Give it more
#    steps instead: set `FT_EPOCHS` to twice its value and re-run section 8's cells (the runs are
#    keyed by their steps, so the first runs stay on disk; the first cell fine-tunes both learning
#    rates' pairs at the new length, four runs, two at a time). Does the gap close, and does the 28-px
#    curve still climb in the checked window?
# 7. Load timm's `vit_tiny_patch16_224` with `pretrained=True` (needs a download) through
#    `vitcourse.models.convert.vit_from_timm` and measure the grid-neighbour share of its position
#    embeddings (a 14x14 grid): what does pre-training on ImageNet-21k give?
