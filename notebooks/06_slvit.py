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
# # 06 · SL-ViT: a ViT for small data sets
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/06_slvit.ipynb)
#
# Chapters 04 and 05 fought the ViT's hunger for data from outside the model: more data, augmentation,
# a CNN teacher. Lee, Lee & Song (2021, "Vision Transformer for Small-Size Datasets"; source 002) change
# the model instead, in two places, and name the two problems they fix:
#
# * **weak tokenisation**: a patch token sees only its own $P\times P$ pixels, a small receptive field
#   next to a CNN's; **Shifted Patch Tokenization (SPT)** lets each token see half a patch around it;
# * **weak attention**: the scores are divided by a *fixed* $\sqrt{d_k}$ (chapter 02: it keeps the
#   softmax out of saturation). Seen as a softmax temperature, $\sqrt{d_k}$ is a high one, and with
#   many tokens the weights come out smooth, closer to uniform; **Locality Self-Attention (LSA)**
#   *learns* the temperature and masks each token's attention to itself, which sharpens the scores.
#
# Both are add-ons: the paper puts them into several vision transformers (ViT, T2T, CaiT, PiT and
# Swin), not only the plain ViT we use here.
#
# **Learning goals**
# 1. Compute a token's receptive field with the paper's formula for ViT, SPT and ResNet-50.
# 2. Build SPT and LSA in a few lines and check them against `vitcourse.nn`.
# 3. Run the paper's ablation, ViT / +SPT / +LSA / both, trained identically on a small data set.
# 4. Measure what LSA does to attention: entropy per layer, class-token maps, the learned temperature.
#
# Claims to reproduce (**C6**): *SPT and LSA each improve ViT on a small data set, both together most;
# LSA sharpens attention (lower entropy).* The paper: ViT 93.58 → SL-ViT 94.53 on CIFAR-10, 73.81 →
# 76.92 on CIFAR-100, 57.07 → 61.07 on Tiny-ImageNet (their ViT: width 192, depth 9, 12 heads of 16,
# patch 4, 100 epochs with strong augmentation).

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

print(projected("06_slvit"))

# %%
import copy
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from vitcourse import analysis, budget
from vitcourse import data as D
from vitcourse.checkpoint import load_checkpoint, save_checkpoint
from vitcourse.claims import Claims, paired, regime
from vitcourse.nn import LocalitySelfAttention, ShiftedPatchTokenization, receptive_field, slvit
from vitcourse.nn.slvit import DIAGONALS, shift_image
from vitcourse.models.vit import config_of
from vitcourse.recipes import recipe, recipe_run_dir, train_for_steps, train_recipe
from vitcourse.study import Study
from vitcourse.train import evaluate

DEVICE = vitcourse.device()
DATASET = D.dataset_for_profile()                         # synthetic | fashion_mnist | cifar10
N_TRAIN = budget(smoke=512, cpu=500, gpu=5000)            # a small data set: a stratified subset
STEPS = budget(smoke=10, cpu=1000, gpu=10000)             # the same for every variant ...
BATCH = budget(smoke=64, cpu=64, gpu=128)                 # ... in batches of this many images
EVALS = 5                                                 # points of each run's learning curve (every 20% of the steps) ...
CURVE_IMAGES = budget(smoke=256, cpu=5000, gpu=10000)     # ... measured on this many test images
SEEDS = budget(smoke=(0,), cpu=(0, 1, 2), gpu=(0, 1, 2))  # paired: a seed fixes the batches for every variant
N_ANALYSIS = budget(smoke=32, cpu=256, gpu=256)           # test images for the attention measurements
# Thresholds of the claims and of their regime, fixed before any run.
EACH_GAIN = 0.003       # C6a: +SPT and +LSA each beat the ViT by >= 0.3 point (mean paired gain, 95% interval
                        # above 0), and SL-ViT (both) is at least as good as either one alone
ENTROPY_DROP = 0.05     # C6b: LSA's class-token attention entropy in the last layer (relative to its maximum)
                        # at least 5% below the ViT's, mean over seeds (the paper's figures show that row)
PLATEAU = 0.005         # regime: each variant's test accuracy (mean over seeds) rose < 0.5 point over the last 20% of steps
OVERFIT = 0.05          # regime: each variant's clean training accuracy exceeds its test accuracy by >= 5 points
train_data, test_data = D.load(DATASET, "train"), D.load(DATASET, "test")
if N_TRAIN is not None:
    train_data = D.subset(train_data, N_TRAIN, seed=0)
C, H, W = train_data.shape
test_loader = D.DeviceLoader(test_data, 1000, shuffle=False, device=DEVICE)
r = recipe("vit")                                         # chapter 03's ViT and its training recipe
P = config_of(r.model).patch_size
cfg = config_of(r.model)
print(train_data, "\n", test_data)
print(f"the ViT: patch {P} ({(H // P) ** 2} tokens + class token), width {cfg.dim}, {cfg.depth} layers, "
      f"{cfg.num_heads} heads of d_k = {cfg.dim // cfg.num_heads}")
print(f"{STEPS} steps of {BATCH} images = {STEPS * BATCH / len(train_data):.1f} passes over the training subset; "
      f"seeds {SEEDS}; augmentation: {r.augment or 'none'}")
# One colour per variant in every figure.
COLORS = {"ViT": "tab:gray", "+SPT": "tab:blue", "+norm": "tab:purple", "+LSA": "tab:orange", "SL-ViT": "tab:green",
          "chapter 03's ViT": "black"}

# %% [markdown]
# ## 1. Weak tokenisation: the receptive field of a token
#
# The paper's equation 1 gives the receptive field of a token made by a tokenizer with kernel $k$ and
# stride $j$:
# $$r_\text{token} = r_\text{trans}\cdot j + (k - j)$$
# where $r_\text{trans}$ is the receptive field, counted in tokens, of what comes after the tokenizer.
# The paper takes the Transformer encoder as not changing it ($r_\text{trans} = 1$: this counts only
# the pixels mixed into one token before attention, not what attention later reads), so with
# $k = j = P$ each ViT token sees $P$ pixels across, 16 for ViT-B/16. SPT's token sees its patch and
# half a patch on every side, $k = 2P$. Applied layer by layer from the top of a CNN down to its
# pixels (equivalently, $r \mathrel{+}= (k-1)\cdot$ the product of the strides below, which is how
# `receptive_field` computes it), the same equation gives the receptive field of a CNN feature.
# The original ResNet-50 (the stride on each stage's first 1x1 convolution; torchvision's "v1.5"
# puts it on the 3x3 and gets 427), followed through all its layers,
# sees 483 pixels, more than the whole 224-px image:

# %%
resnet50 = [(7, 2), (3, 2)]                                       # stem convolution, max pool
for blocks, stride in ((3, 1), (4, 2), (6, 2), (3, 2)):
    for b in range(blocks):                                       # bottleneck: 1x1 (stride), 3x3, 1x1
        resnet50 += [(1, stride if b == 0 else 1), (3, 1), (1, 1)]
fields = {"ViT-B/16 patch token": slvit.token_receptive_field(1, 16, 16),
          "SPT token, P = 16": slvit.token_receptive_field(1, 32, 16),
          f"this chapter's ViT token, P = {P}": slvit.token_receptive_field(1, P, P),
          f"this chapter's SPT token, P = {P}": slvit.token_receptive_field(1, P + 2 * (P // 2), P),
          "ResNet-50, last stage": receptive_field(resnet50)}
for name, rf in fields.items():
    print(f"{name:34s} {rf:4d} pixels")
print(f"a ResNet-50 feature sees {fields['ResNet-50, last stage'] / fields['ViT-B/16 patch token']:.0f} times "
      "further across than a ViT-B/16 token")
assert fields["ViT-B/16 patch token"] == 16 and fields["ResNet-50, last stage"] == 483

# %% [markdown]
# SPT in pictures: the image and its four diagonal shifts by half a patch; one token is cut from the
# same $P\times P$ cell of all five, so it sees the pixels inside the dashed box.

# %%
img = test_data.images[:1].float() / 255
s = P // 2
views = [img] + [shift_image(img, dx * s, dy * s) for dx, dy in DIAGONALS]
titles = ["input"] + [f"shift ({dx * s:+d}, {dy * s:+d})" for dx, dy in DIAGONALS]   # (x, y): + = right, down
g = H // P
row, col = g // 2, g // 2                                          # a token near the centre
fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
for ax, v, t in zip(axes, views, titles):
    ax.imshow(analysis.to_display(v[0]), cmap="gray" if C == 1 else None)
    ax.add_patch(plt.Rectangle((col * P - 0.5, row * P - 0.5), P, P, fill=False, color="tab:red", lw=2))
    ax.set(title=t, xticks=[], yticks=[])
axes[0].add_patch(plt.Rectangle((col * P - s - 0.5, row * P - s - 0.5), P + 2 * s, P + 2 * s, fill=False,
                                color="tab:orange", ls="--", lw=2))
fig.suptitle(f"one SPT token (red cell in each view) sees the orange box: {P + 2 * s} pixels across instead of {P}")
plt.show()

# %% [markdown]
# The red square is the same cell in all five images; because four of them are shifted, the token
# cut from that cell holds pixels from the whole dashed box of the input. A shift $(+s, +s)$, here
# $s = P/2$ (printed in the panel titles), moves the image $s$ pixels right and $s$ down (zeros fill
# the gap), so the red cell then shows pixels from up and to the left of it.
#
# ## 2. SPT and LSA from scratch
#
# **SPT** (section 3.2): concatenate the input with its four shifts (5C channels), cut into patches,
# flatten, LayerNorm, linear. **LSA** (section 3.3): scores $R = xE_q(xE_k)^\top$, the diagonal set to
# $-\infty$ (no token attends to itself), divided by a learned temperature $\tau$ (we learn its
# inverse, one per head, starting at $1/\sqrt{d_k}$), then the softmax.
#
# Why mask the diagonal? Query and key of a token are two projections of the *same* vector, so the
# self-score $q_i\cdot k_i$ tends to be the largest in its row, and a softmax spends much of its
# weight on the token itself, which the residual connection carries along anyway. Masking it makes
# every token spend its attention on the others.

# %%
torch.manual_seed(0)
spt = ShiftedPatchTokenization(C, 32, P)
x = torch.randn(2, C, H, W)
stacked = torch.cat([x] + [shift_image(x, dx * s, dy * s) for dx, dy in DIAGONALS], dim=1)      # (B, 5C, H, W)
tokens = spt.proj(spt.norm(rearrange(stacked, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=P, p2=P)))
print("input", tuple(x.shape), "-> stacked", tuple(stacked.shape), "-> tokens", tuple(tokens.shape))
assert torch.allclose(tokens, spt(x), atol=1e-6)

lsa = LocalitySelfAttention(32, 4).eval()
z = torch.randn(2, 10, 32)
q, k, v = lsa._project(z, None)                                         # (B, heads, N, d_k) each
scores = (q @ k.transpose(-1, -2)) * lsa.scale.view(1, -1, 1, 1)        # R / tau, tau learnable per head
scores = scores.masked_fill(torch.eye(10, dtype=torch.bool), float("-inf"))   # diagonal masking
weights = scores.softmax(-1)
out = lsa.proj(rearrange(weights @ v, "b h n d -> b n (h d)"))
ours, ours_weights = lsa(z, need_weights=True)
assert torch.allclose(out, ours, atol=1e-5) and torch.allclose(weights, ours_weights, atol=1e-6)
assert (ours_weights.diagonal(dim1=-2, dim2=-1) == 0).all()
print("LSA: self-attention weights on the diagonal:", ours_weights.diagonal(dim1=-2, dim2=-1).abs().max().item())

# %% [markdown]
# Both are parts of the one ViT: `ViTConfig(tokenizer="spt")` and `ViTConfig(attention="lsa")`; an
# SL-ViT is both (`vitcourse.models`: `spt_*`, `lsa_*`, `slvit_*` next to each profile's `vit_*`).
#
# ## 3. The ablation: ViT, +SPT, +LSA, SL-ViT, and a control
#
# Chapter 03's ViT, with its recipe (learning rate and schedule, weight decay, label smoothing and
# the augmentation printed in the setup cell), trained on the same small stratified subset for the
# same STEPS steps of BATCH images, changing only the tokenizer and the attention. SPT changes two
# things at once: it adds the shifted copies *and* a LayerNorm on the flattened patches, which the
# plain patch embedding does not have. The control **+norm** (`tokenizer="patch_norm"`: patches,
# LayerNorm, linear, no shifts) tells the two apart.
#
# Every variant is trained with every seed in SEEDS; a seed fixes the order and augmentation of the
# batches for all variants (their initial weights differ, since their parts differ), so two variants
# are compared seed by seed (a *paired* comparison). Every run keeps its learning curve (accuracy on
# CURVE_IMAGES test images and on its training batches, EVALS times) and, at the same points, the
# entropy of its attention and LSA's learned temperatures on a fixed batch of training images. Its
# final test accuracy is measured on the whole test split.
#
# **The regime** (fixed before the run): the claim is about a *small* data set, so (1) each variant is
# near convergence: its test accuracy (mean over seeds) rose less than PLATEAU = 0.5 point over the
# last 20% of the steps; and (2) the data, not the steps, limits it: its clean training accuracy
# exceeds its test accuracy by at least OVERFIT = 5 points. Nothing is chosen on the test images (no
# best step, no early stop): the curves only say how far training got, and whether C6a can be judged.
#
# **The thresholds** (fixed before the run): C6a holds when +SPT and +LSA each beat the ViT by a mean
# paired gain of at least EACH_GAIN = 0.3 point (0.003 in the printed accuracies) with a 95% interval
# above zero, and SL-ViT is at least as good as either alone (mean over seeds). The paper's smallest gain
# of SL-ViT over its ViT is +0.95 point (CIFAR-10), for both parts together; we ask each part for about
# a third of it. C6b holds when +LSA's class-token attention entropy in the last layer, relative to its
# maximum, is at least ENTROPY_DROP = 5% (relative: 1 - LSA / ViT >= 0.05) below the ViT's (section 4);
# the paper shows this row in its figures but gives no number, so 5% is the course's bar for "visibly
# sharper". The convergence condition is judged at the end of a cosine schedule, whose learning rate is
# small over the last 20% of the steps: a rise there is the schedule's last gains, and the paired gains
# at every point of the curves (printed below) say whether the ranking depends on it. With three seeds an interval may be wider
# than a threshold: the verdict then says "inconclusive", which is not evidence against the claim. Parameter counts and FLOPs per image (forward pass, counted by
# `FlopCounterMode`, 2 per multiply-add) show what each change costs.

# %%
VARIANTS = {"ViT": {}, "+SPT": dict(tokenizer="spt"), "+norm": dict(tokenizer="patch_norm"),
            "+LSA": dict(attention="lsa"), "SL-ViT": dict(tokenizer="spt", attention="lsa")}
study = Study("06_slvit")
train_eval = D.DeviceLoader(train_data, 1000, shuffle=False, device=DEVICE)
curve_loader = D.DeviceLoader(D.subset(test_data, CURVE_IMAGES, seed=3), 1000, shuffle=False, device=DEVICE)
probe = next(iter(D.DeviceLoader(D.subset(train_data, 128, seed=2), 128, shuffle=False, device=DEVICE)))[0]


def flops_per_image(model):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.randn(1, C, H, W, device=DEVICE))
    return counter.get_total_flops()


def normalised_entropy(model, images):
    """Per layer, the attention entropy of all query tokens and of the class token alone (mean over
    heads and images), each divided by its maximum, the log of the number of keys a query may attend
    to (one fewer with LSA's diagonal mask): 1 is uniform attention, 0 attention on one token."""
    maps = analysis.attention_maps(model, images)
    keys = maps[0].shape[-1] - (1 if isinstance(model.blocks[0].attn, LocalitySelfAttention) else 0)
    every = analysis.attention_entropy(maps).mean(-1) / math.log(keys)
    cls = analysis.attention_entropy(maps, query=0).mean(-1) / math.log(keys)
    return every.cpu(), cls.cpu()


def during_training(model) -> dict:
    """What fit keeps in every record: the per-layer entropies on the probe images, and LSA's temperatures."""
    every, cls = normalised_entropy(model, probe)
    out = {"entropy": every.tolist(), "cls_entropy": cls.tolist()}
    if isinstance(model.blocks[0].attn, LocalitySelfAttention):
        out["tau"] = [(1 / b.attn.scale).tolist() for b in model.blocks]        # (layers, heads)
    return out


def train_variant(config: dict) -> dict:
    vitcourse.seed_everything(config["seed"])
    model = r.build(train_data, **VARIANTS[config["variant"]])
    history = train_for_steps(r, model, train_data, steps=config["steps"], seed=config["seed"], curve=curve_loader,
                              evals=config["evals"], batch_size=config["batch"], measure=during_training,
                              checkpoint=study.checkpoint(config), device=DEVICE)
    save_checkpoint(study.path(config).with_suffix(".pt"), model=model)   # kept for the analysis below
    return {"metrics": {"test_acc": evaluate(model, test_loader)["acc"], "train_acc": evaluate(model, train_eval)["acc"],
                        "seconds": sum(e["seconds"] for e in history.epochs),
                        "params": sum(p.numel() for p in model.parameters()), "flops": flops_per_image(model)},
            "history": history.epochs}


def config_of_run(variant, seed):
    return {"variant": variant, "parts": VARIANTS[variant], "recipe": r.to_dict(), "data": DATASET,
            "n_train": len(train_data), "steps": STEPS, "batch": BATCH, "evals": EVALS, "curve_images": CURVE_IMAGES,
            "seed": seed}


def load_variant(variant, seed=SEEDS[0]):
    model = r.build(train_data, **VARIANTS[variant]).to(DEVICE)
    load_checkpoint(study.path(config_of_run(variant, seed)).with_suffix(".pt"), model=model, restore_rng=False)
    return model.eval()


runs = {}
for variant, seed in tqdm([(v, s) for v in VARIANTS for s in SEEDS], desc="runs"):
    runs[variant, seed] = study.run(config_of_run(variant, seed), train_variant)
results = {k: run["metrics"] for k, run in runs.items()}
per_seed_acc = {v: [results[v, s]["test_acc"] for s in SEEDS] for v in VARIANTS}
acc = {v: float(np.mean(a)) for v, a in per_seed_acc.items()}
print(f"{'variant':8s} {'test acc (mean)':>15s} {'per seed':>22s} {'train acc':>9s} {'params':>9s} {'MFLOPs':>8s}")
for v in VARIANTS:
    accs = " ".join(f"{a:.4f}" for a in per_seed_acc[v])
    m = results[v, SEEDS[0]]
    train_acc = np.mean([results[v, s]["train_acc"] for s in SEEDS])
    print(f"{v:8s} {acc[v]:15.4f} {accs:>22s} {train_acc:9.4f} {m['params']:9,d} {m['flops'] / 1e6:8.1f}")

# %%
steps = [e["step"] for e in runs["ViT", SEEDS[0]]["history"]]
curve = {v: np.mean([[e["test_acc"] for e in runs[v, s]["history"]] for s in SEEDS], axis=0) for v in VARIANTS}
fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(12, 3.8))
for k, v in enumerate(VARIANTS):
    ax_d.scatter([k] * len(SEEDS), per_seed_acc[v], color=COLORS[v], s=25, zorder=3, label="one seed" if k == 0 else None)
    ax_d.hlines(acc[v], k - 0.25, k + 0.25, color=COLORS[v], lw=3, label="mean over seeds" if k == 0 else None)
    ax_c.plot(steps, curve[v], "o-", color=COLORS[v], label=v)
ax_d.set_xticks(range(len(VARIANTS)), list(VARIANTS))
ax_d.set(xlim=(-0.6, len(VARIANTS) - 0.4), ylabel="test accuracy",
         title=f"SL-ViT ablation on {len(train_data):,} {DATASET} images")
ax_d.legend(fontsize=8)
ax_c.axvspan(0.8 * STEPS, STEPS, color="grey", alpha=0.15, label="last 20% of the steps")
ax_c.set(xlabel="step", ylabel="test accuracy (mean over seeds)", title="learning curves")
ax_c.legend(fontsize=8)
fig.tight_layout()
plt.show()
overfit = {v: np.mean([results[v, s]["train_acc"] - results[v, s]["test_acc"] for s in SEEDS]) for v in VARIANTS}
c6a_regime = regime(steps, curve, PLATEAU, gaps=overfit, overfit=OVERFIT)     # vitcourse.claims: the two conditions
print(c6a_regime.report("C6a"))

# %% [markdown]
# Left: each horizontal line is a variant's mean over seeds, each dot one seed (the y-axis is zoomed in: the whole
# range is a few points). Right: each variant's test accuracy during training, mean over seeds; a curve
# that still climbs in the grey band has not converged. The printed lines check the regime.
#
# The gains, seed by seed against the ViT, and the two comparisons that take SPT apart (+SPT against
# +norm: the shifts alone) and that ask whether the parts add up (SL-ViT against each part alone):

# %%
comparisons = [(v, "ViT") for v in list(VARIANTS)[1:]] + [("+SPT", "+norm"), ("SL-ViT", "+SPT"), ("SL-ViT", "+LSA")]
gains = {(a, b): paired(per_seed_acc[a], per_seed_acc[b]) for a, b in comparisons}
for (a, b), g in gains.items():
    print(f"{a:7s} - {b:6s} {g.describe()}")
# A second measurement: the same paired gains at every point of the learning curves (curve images).
at_step = {(v, k): paired([runs[v, s]["history"][k]["test_acc"] for s in SEEDS],
                          [runs["ViT", s]["history"][k]["test_acc"] for s in SEEDS]).mean
           for v in list(VARIANTS)[1:] for k in range(len(steps))}
print("paired gain over the ViT at steps " + ", ".join(map(str, steps)) + ": "
      + "; ".join(f"{v} " + " ".join(f"{at_step[v, k]:+.3f}" for k in range(len(steps))) for v in list(VARIANTS)[1:]))
shift_gain, norm_gain = gains["+SPT", "+norm"], gains["+norm", "ViT"]
print(f"SPT's two parts: the shifts (+SPT - +norm) {shift_gain.mean:+.4f} ({'real' if shift_gain.real else 'within the noise'}), "
      f"the LayerNorm alone (+norm - ViT) {norm_gain.mean:+.4f} ({'real' if norm_gain.real else 'within the noise'})")

# %% [markdown]
# Each line is a mean paired difference with its 95% interval from the spread of the per-seed
# differences (Student's t for len(SEEDS) - 1 degrees of freedom). "Within the noise" means this run
# cannot tell that difference from zero; it is not evidence that the difference is zero. The next
# line gives the gains at every point of the learning curves: a gain present at every step does not
# depend on where training stopped. The last line takes SPT apart: the +norm control has SPT's
# LayerNorm without its shifts.
#
# ## 4. Weak attention, measured: entropy per layer
#
# The entropy of an attention row is $\log T$ when a token attends uniformly to all $T$ tokens and 0
# when it attends to one. The "weak attention" problem says the ViT's rows sit near the uniform
# maximum; LSA should bring them down. One care: LSA's diagonal mask leaves each
# query $T-1$ keys, so its maximum is $\log(T-1)$, a little lower by construction. To compare like
# with like we divide each model's entropy by its own maximum: 1 is uniform attention, 0 attention
# on a single token. Two measures: the mean over all query tokens, and the class token's row alone
# (the one the classifier reads, and the one the paper's figures show), on N_ANALYSIS test images.

# %%
images = next(iter(D.DeviceLoader(D.subset(test_data, N_ANALYSIS, seed=1), N_ANALYSIS, shuffle=False,
                                  device=DEVICE)))[0]
trained = {v: load_variant(v) for v in VARIANTS}               # seed 0's models, for the figures below
tokens_n = trained["ViT"].num_prefix_tokens + trained["ViT"].config.num_patches
measured = {(v, s): normalised_entropy(trained[v] if s == SEEDS[0] else load_variant(v, s), images)
            for v in VARIANTS for s in SEEDS}
entropy = {v: torch.stack([measured[v, s][0] for s in SEEDS]).mean(0) for v in VARIANTS}        # per layer
cls_last = {v: [measured[v, s][1][-1].item() for s in SEEDS] for v in VARIANTS}                 # per seed
# Chapter 03's ViT, trained on the whole training set, when chapter 03 has been run here (loaded, not
# trained: its checkpoint is where train_recipe keeps it).
full_train = D.load(DATASET, "train")
ch03_run = recipe_run_dir(recipe("vit"), full_train, name="03_vit") / "checkpoint.pt"
finished = ch03_run.exists() and torch.load(ch03_run, weights_only=True)["epoch"] >= recipe("vit").epochs
if finished:  # an interrupted chapter-03 run is left alone: loading it here would train the rest of it
    vit03, _ = train_recipe(recipe("vit"), full_train, name="03_vit", progress=False, device=DEVICE)
    if vit03.num_prefix_tokens + vit03.config.num_patches == tokens_n:
        entropy["chapter 03's ViT"] = normalised_entropy(vit03.eval(), images)[0]
    print(f"chapter 03's ViT ({len(full_train):,} images) loaded from {ch03_run.parent}")
else:
    print("chapter 03's ViT is not trained (or not finished) here: run notebook 03 first; it is left out of the figure")
fig, (ax_l, ax_t) = plt.subplots(1, 2, figsize=(12, 3.8))
for v, e in entropy.items():
    ax_l.plot(range(1, len(e) + 1), e, marker="o", label=v, ls=":" if v not in VARIANTS else "-", color=COLORS[v])
ax_l.axhline(1.0, color="gray", ls="--", label="uniform attention")
ax_l.set(xlabel="layer", ylabel="attention entropy / its maximum", title="after training: all query tokens")
ax_l.legend(fontsize=8)
for v in VARIANTS:   # during training, from the records: mean over layers and seeds, on the probe images
    during = np.mean([[np.mean(e["entropy"]) for e in runs[v, s]["history"]] for s in SEEDS], axis=0)
    ax_t.plot(steps, during, "o-", color=COLORS[v], label=v)
ax_t.set(xlabel="step", ylabel="attention entropy / its maximum", title="during training (mean over layers)")
ax_t.legend(fontsize=8)
fig.tight_layout()
plt.show()
mean_entropy = {v: e.mean().item() for v, e in entropy.items()}


def change(new, old):
    """'x% lower' or 'x% higher': the relative change from old to new, in words."""
    return f"{abs(1 - new / old):.1%} {'lower' if new < old else 'higher'}"


print(f"mean normalised entropy over layers and {len(SEEDS)} seed(s): "
      + ", ".join(f"{v} {e:.3f}" for v, e in mean_entropy.items())
      + f" (1 = uniform over the {tokens_n} tokens, {tokens_n - 1} with LSA's mask)")
print(f"all tokens, LSA's effect: +LSA vs ViT {change(mean_entropy['+LSA'], mean_entropy['ViT'])}, "
      f"SL-ViT vs +SPT {change(mean_entropy['SL-ViT'], mean_entropy['+SPT'])}")
print("class token, last layer, per seed: " + "; ".join(f"{v} " + " ".join(f"{x:.3f}" for x in cls_last[v])
                                                       for v in VARIANTS))
cls_drop = 1 - np.mean(cls_last["+LSA"]) / np.mean(cls_last["ViT"])
sharpest = min(VARIANTS, key=lambda v: mean_entropy[v])
print(f"the sharpest attention (all tokens) is {sharpest}'s ({mean_entropy[sharpest]:.3f}), whose test accuracy is "
      f"{acc[sharpest]:.4f} against the ViT's {acc['ViT']:.4f} and the best variant's {max(acc.values()):.4f}: "
      "lower entropy is not by itself better accuracy")
print(f"class token, last layer: +LSA vs ViT {change(np.mean(cls_last['+LSA']), np.mean(cls_last['ViT']))} "
      f"(per seed: {', '.join(change(a, b) for a, b in zip(cls_last['+LSA'], cls_last['ViT']))})")

# %% [markdown]
# Left: each curve is a variant's entropy per layer after training, mean over the seeds' models; the
# dashed line is uniform attention, and the lower a curve, the more each query concentrates on a few
# tokens (chapter 03's ViT, trained on all the data, dotted, when it is there). Right: the same
# measure during training, on a fixed batch of training images, from the first recorded point (20%
# of the steps): how far from uniform each model moved, and when. The
# printed lines give the averages, and the class token's last-layer row per seed, which is C6b's
# measure.
#
# ## 5. Where the class token looks, ViT against SL-ViT
#
# Source 002's figure: with SPT and LSA the class token's attention in the last layer concentrates on
# the object. Here the class token's attention, averaged over heads, on the same test images, one
# square per patch. Two cares make the two models comparable: the ViT's class token may attend to
# itself and the SL-ViT's may not (LSA's mask), so we renormalise each row over the patches (each
# map sums to 1); and all panels share one colour scale.

# %%
def class_token_map(v):
    """(images, g, g): the last layer's class-token attention over the patches, mean over heads, each map summing to 1."""
    heat = analysis.cls_attention(analysis.attention_maps(trained[v], images)[-1], trained[v]).mean(1).cpu()
    return heat / heat.sum(dim=(1, 2), keepdim=True)


maps = {v: class_token_map(v) for v in ("ViT", "SL-ViT")}
show, mean, std = 6, test_data.mean, test_data.std
vmax = max(m[:show].max().item() for m in maps.values())
fig, axes = plt.subplots(3, show, figsize=(2 * show + 1, 6.3))
for k in range(show):
    axes[0, k].imshow(analysis.to_display(images[k].cpu(), mean, std), cmap="gray" if C == 1 else None)
    axes[0, k].set(xticks=[], yticks=[])
    for row, v in ((1, "ViT"), (2, "SL-ViT")):
        shown = analysis.overlay(axes[row, k], images[k].cpu(), maps[v][k], mean, std, vmin=0, vmax=vmax)
axes[0, 0].set_ylabel("input"), axes[1, 0].set_ylabel("ViT"), axes[2, 0].set_ylabel("SL-ViT")
fig.colorbar(shown, ax=axes[1:].ravel().tolist(), shrink=0.8, label="share of the class token's attention")
fig.suptitle(f"class-token attention in the last layer (seed {SEEDS[0]}, mean over heads, renormalised over the patches)")
plt.show()

# On the object? Only on a data set with a black background (Fashion-MNIST) can a patch be called
# "object" by its brightness: its mean pixel above 5%. CIFAR's photographs have none.
if DATASET == "fashion_mnist":
    on_object = analysis.object_patches(D.subset(test_data, N_ANALYSIS, seed=1).images, P)  # the same images, in order
    object_share = {v: (m * on_object).sum(dim=(1, 2)).mean().item() for v, m in maps.items()}
    print(f"over {N_ANALYSIS} test images (seed {SEEDS[0]}'s models), share of the class token's attention on object "
          f"patches: ViT {object_share['ViT']:.3f}, SL-ViT {object_share['SL-ViT']:.3f} (attending uniformly would "
          f"give {on_object.float().mean().item():.3f}, the share of object patches)")
else:
    print(f"{DATASET} has no black background: the share of attention on the object is not measured here")
peak = {v: m.flatten(1).amax(-1).mean().item() for v, m in maps.items()}
print(f"largest weight on one patch: ViT {peak['ViT']:.3f}, SL-ViT {peak['SL-ViT']:.3f} "
      f"(uniform: {1 / trained['ViT'].config.num_patches:.3f})")

# %% [markdown]
# Bright squares are the patches the class token reads most; one colour scale for all panels, so
# brighter means more in both rows. The printed lines test source 002's statement in numbers: how much
# of each model's class-token attention lands on the object, against attending uniformly, and how
# concentrated it is.
#
# ## 6. The learned temperature
#
# LSA learns its softmax temperature $\tau$ per head (we store its inverse). The paper's table 1:
# accuracy is best with a temperature *below* $\sqrt{d_k}$, i.e. sharper than the standard scaling.
# Where did training move it, and when?

# %%
d_k = trained["+LSA"].config.dim // trained["+LSA"].config.num_heads
tau = {v: torch.stack([1 / b.attn.scale.detach().cpu() for b in trained[v].blocks]) for v in ("+LSA", "SL-ViT")}
fig, (ax_f, ax_t) = plt.subplots(1, 2, figsize=(12, 3.8))
for v, t in tau.items():
    for h in range(t.shape[1]):
        ax_f.scatter(range(1, t.shape[0] + 1), t[:, h], s=15, color=COLORS[v], label=v if h == 0 else None)
    during = np.array([e["tau"] for e in runs[v, SEEDS[0]]["history"]])            # (evals, layers, heads)
    for layer in range(during.shape[1]):
        ax_t.plot([0] + steps, [math.sqrt(d_k)] + during[:, layer].mean(-1).tolist(), "o-", color=COLORS[v],
                  alpha=0.4 + 0.6 * layer / max(during.shape[1] - 1, 1), label=v if layer == 0 else None)
for ax in (ax_f, ax_t):
    ax.axhline(math.sqrt(d_k), color="gray", ls="--", label=f"sqrt(d_k) = {math.sqrt(d_k):.2f} (the start)")
    ax.legend(fontsize=8)
ax_f.set(xlabel="layer", ylabel="learned temperature tau", title=f"each head after training (seed {SEEDS[0]})")
ax_t.set(xlabel="step", ylabel="tau, mean over a layer's heads",
         title=f"during training (seed {SEEDS[0]}; darker: deeper layer)")
fig.tight_layout()
plt.show()
for v, t in tau.items():
    print(f"{v:7s} (seed {SEEDS[0]}, {t.numel()} heads): {(t < math.sqrt(d_k)).float().mean():.0%} ended below sqrt(d_k); "
          f"from {t.min():.2f} to {t.max():.2f}, median {t.median():.2f} against a start of {math.sqrt(d_k):.2f}: moved "
          f"{'down (sharper)' if t.median() < math.sqrt(d_k) else 'up (smoother)'} on the whole")


# Which part of LSA did what: the trained +LSA models with their temperatures reset to the start
# (1/sqrt(d_k) for every head) keep only the diagonal mask's effect on the same weights.
def reset_temperature(model):
    model = copy.deepcopy(model)
    for b in model.blocks:
        b.attn.scale.data.fill_(d_k ** -0.5)
    return model.eval()


mask_only = [normalised_entropy(reset_temperature(trained["+LSA"] if s == SEEDS[0] else load_variant("+LSA", s)), images)[1][-1].item()
             for s in SEEDS]
print(f"class token, last layer, entropy / maximum (mean over seeds): ViT {np.mean(cls_last['ViT']):.3f}; +LSA as trained "
      f"{np.mean(cls_last['+LSA']):.3f}; +LSA with its temperatures reset to 1/sqrt(d_k) {np.mean(mask_only):.3f}")

# %% [markdown]
# Left: each dot is one head of one layer after training; they all started on the dashed line, and
# dots below it learned a sharper softmax than the standard $1/\sqrt{d_k}$ scaling. Right: each
# layer's mean temperature as training went. The printed lines say where most heads went. A
# temperature that rises makes that head's attention *smoother*, the opposite of the paper's
# intent. The last line separates LSA's two parts on the same trained weights: with the temperatures
# reset to the start, what remains is the diagonal mask's effect (and the weights it trained); the
# difference from "as trained" is what the learned temperatures did. (These weights learned *with*
# their temperatures, so this is a reading of the trained model, not a second training run: exercise
# 2 trains the mask alone.)
#
# ## 7. Claims
#
# The thresholds, fixed in the setup cell before any run and stated in section 3: C6a holds when its
# regime is reached, +SPT and +LSA each beat the ViT by a mean paired gain of at least EACH_GAIN with
# a 95% interval above zero (the paper's SL-ViT gains over its ViT are +0.95 on CIFAR-10, +3.11 on
# CIFAR-100 and +4.00 on Tiny-ImageNet, for both parts together), and SL-ViT is at least as good as
# either alone (mean over seeds). C6b holds when the class token's last-layer attention entropy of
# +LSA, relative to its maximum, is at least ENTROPY_DROP below the ViT's (mean over seeds).

# %%
claims = Claims("06_slvit")
each = [gains[v, "ViT"] for v in ("+SPT", "+LSA")]
c6a = (f"{len(train_data):,} images, {len(SEEDS)} paired seed(s): ViT {acc['ViT']:.4f}; +SPT {gains['+SPT', 'ViT'].mean:+.4f} "
       f"+- {gains['+SPT', 'ViT'].half_width:.4f}, +LSA {gains['+LSA', 'ViT'].mean:+.4f} +- {gains['+LSA', 'ViT'].half_width:.4f}, "
       f"SL-ViT {gains['SL-ViT', 'ViT'].mean:+.4f} +- {gains['SL-ViT', 'ViT'].half_width:.4f} (95%)")
both_most = acc["SL-ViT"] >= max(acc["+SPT"], acc["+LSA"])
parts = (", ".join(f"{v} - ViT: {gains[v, 'ViT'].judge(EACH_GAIN)}" for v in ("+SPT", "+LSA"))
         + f"; SL-ViT at least as good as either alone: {'yes' if both_most else 'NO'} (SL-ViT - +SPT "
         f"{gains['SL-ViT', '+SPT'].mean:+.4f} +- {gains['SL-ViT', '+SPT'].half_width:.4f}, SL-ViT - +LSA "
         f"{gains['SL-ViT', '+LSA'].mean:+.4f} +- {gains['SL-ViT', '+LSA'].half_width:.4f})")
claims.add("C6a", "SPT and LSA each improve ViT on a small data set, both together most",
           measured=c6a_regime.note(c6a + "; " + parts),
           holds=(c6a_regime.reached and all(g.mean >= EACH_GAIN and g.real for g in each)
                  and both_most))
claims.add("C6b", "LSA sharpens attention (lower entropy)",
           measured=(f"class token, last layer, entropy / maximum: ViT {np.mean(cls_last['ViT']):.3f}, +LSA "
                     f"{np.mean(cls_last['+LSA']):.3f} ({change(np.mean(cls_last['+LSA']), np.mean(cls_last['ViT']))}); "
                     f"all tokens, all layers: ViT {mean_entropy['ViT']:.3f}, +LSA {mean_entropy['+LSA']:.3f} "
                     f"({change(mean_entropy['+LSA'], mean_entropy['ViT'])}); {len(SEEDS)} seed(s)"),
           holds=cls_drop >= ENTROPY_DROP)
claims.show()

# %% [markdown]
# **Where a claim says NO, the second measurements say why.** For C6a: the learning curves and the two
# regime conditions of section 3 (a variant still learning, or not limited by its data, is outside
# the claim's regime), the paired gains with their intervals (a gain inside the noise of this many
# seeds is not evidence either way), and the +norm control (how much of SPT's effect is its LayerNorm
# rather than its shifts). For C6b: the entropy of every layer and its course during training
# (section 4), and the learned temperatures (section 6), which say whether LSA's temperature moved
# towards a sharper or a smoother softmax.
#
# The setting is far from the paper's, and the lines printed in the setup cell say how: the number of
# patch tokens, the passes over a small subset, and the augmentation (the paper: 64 tokens on CIFAR,
# 100 epochs of strong augmentation). Exercise 4 and the gpu profile test the larger setting.

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
# * `ex.token_receptive_field.hint()` prints a hint, another on each call;
# * `ex.token_receptive_field.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch06 as ex

# %% tags=["exercise"]
def token_receptive_field(r_trans, j, k):
    """SL-ViT eq. 1: the receptive field of a token made by a tokenizer of stride j and kernel k applied to
    inputs whose receptive field is r_trans (an int)."""
    raise NotImplementedError("write token_receptive_field, then run this cell")


ex.token_receptive_field.check(token_receptive_field)

# %% tags=["exercise"]
def spt_shifts(images, shift):
    """SPT's input: (B, C, H, W) -> (B, 5C, H, W), the images and their four diagonal shifts by
    `shift` pixels along the channels, in this order: the content moved left and up, right and up,
    left and down, right and down (zeros fill in where it left)."""
    raise NotImplementedError("write spt_shifts, then run this cell")


ex.spt_shifts.check(spt_shifts)

# %% tags=["exercise"]
def lsa_mask(n):
    """LSA's diagonal masking as an (n, n) bool mask, True where a token may attend."""
    raise NotImplementedError("write lsa_mask, then run this cell")


ex.lsa_mask.check(lsa_mask)

# %% [markdown]
# ## More exercises (experiments to run)
#
# Runs are stored by their config, not by the code that trained them: after changing a part (e.g.
# `LocalitySelfAttention`), add a new entry to `VARIANTS` (or give the `Study` another name) so that it trains again.
#
# 1. vit-pytorch's variant of SPT shifts by one pixel in the four straight directions (left, right,
#    up, down) instead of half a patch diagonally. Write it (a `shift_image` call per direction) and
#    compare the receptive field and the accuracy.
# 2. Turn off only the diagonal mask of LSA (keep the learnable temperature). Which of the two parts
#    lowers the entropy?
# 3. Fix the temperature at $\sqrt{d_k}/2$ instead of learning it. Compare with the learned values of
#    section 6.
# 4. Train the ablation on all of the training data. Do SPT and LSA still help when data is not small?
