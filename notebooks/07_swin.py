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
# # 07 · Swin: attention in shifted windows, features in a pyramid
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/07_swin.ipynb)
#
# A ViT keeps one resolution from the first layer to the last, and every token attends to every
# other: the cost grows with the *square* of the number of tokens, which rules out small patches on
# large images. CNNs (chapter 00) work the other way: local operations, and a pyramid of feature maps
# that halve in resolution and double in width. The Swin Transformer (Liu et al. 2021; sources 001 and
# 004) brings that pyramid to the Transformer:
#
# * attention only inside non-overlapping $M\times M$ **windows** (W-MSA): linear in the number of tokens;
# * every second block **shifts** the windows by $\lfloor M/2\rfloor$ (SW-MSA), so information crosses window borders;
#   a **cyclic shift** with a mask makes that cheap;
# * a **relative position bias** inside each window instead of an absolute position embedding;
# * **patch merging** between stages: 2x2 neighbours concatenated, 4C → 2C, half the resolution.
#
# **Learning goals**
# 1. Follow the shapes: patch partition, linear embedding, stages, patch merging.
# 2. Build window attention and check it against `vitcourse.models.swin`.
# 3. Draw the cyclic shift, its regions and the attention mask it needs.
# 4. Read the relative position bias table and its index.
# 5. Measure the cost of MSA and W-MSA as the image grows, against the formulas.
# 6. Compare Swin with a ViT of the same size on small data.
#
# Claims to reproduce (**C7**): *W-MSA cost grows linearly with the number of tokens, MSA quadratically;
# Swin beats a ViT of similar size on small data* (SL-ViT paper, from scratch: Swin 94.46 vs ViT 93.58
# on CIFAR-10, 76.87 vs 73.81 on CIFAR-100).

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

print(projected("07_swin"))

# %%
import copy
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

from vitcourse import analysis, budget
from vitcourse import data as D
from vitcourse.checkpoint import load_checkpoint, save_checkpoint
from vitcourse.claims import Claims, paired, regime
from vitcourse.flops import flop_counter
from vitcourse.models import create_model
from vitcourse.models.swin import (PatchMerging, WindowAttention, relative_position_index, shift_attention_mask, shift_regions,
                                   window_partition, window_reverse)
from vitcourse.nn import MultiHeadAttention
from vitcourse.recipes import recipe, train_for_steps
from vitcourse.study import Study
from vitcourse.train import evaluate

DEVICE = vitcourse.device()
DATASET = D.dataset_for_profile()                         # synthetic | fashion_mnist | cifar10
N_TRAIN = budget(smoke=512, cpu=500, gpu=5000)            # small data: a stratified subset of the training split
STEPS = budget(smoke=10, cpu=1200, gpu=20000)             # the same for Swin and ViT ...
BATCH = budget(smoke=64, cpu=64, gpu=128)                 # ... in batches of this many images
EVALS = 5                                                 # points of each run's learning curve (every 20% of the steps)
SEEDS = budget(smoke=(0,), cpu=(0, 1, 2), gpu=(0, 1, 2))  # paired: a seed fixes the batches for both models
COST_SIDES = budget(smoke=(8, 16, 32), cpu=(8, 16, 32, 64), gpu=(8, 16, 32, 64, 128))   # map sides of section 5
COST_DIM, COST_WINDOW = 32, 8                             # the width and window of the cost measurement
# Thresholds of the claims and of their regime, fixed before any run.
MSA_BAND, WMSA_BAND = (1.6, 2.4), (0.75, 1.25)  # C7a: slopes of time per map (quadratic: about 2, linear: 1)
SWIN_GAIN = 0.005   # C7b: the Swin's mean paired gain over the ViT of similar size, with a 95% interval above 0
PLATEAU = 0.005     # C7b's regime: each model's test accuracy (mean over seeds) rose less than this over its last 20% of steps
OVERFIT = 0.05      # C7b's regime: each model's clean training accuracy exceeds its test accuracy by this much (mean over seeds)
train_data, test_data = D.load(DATASET, "train"), D.load(DATASET, "test")
train_data = D.subset(train_data, N_TRAIN, seed=0)
C, H, W = train_data.shape
print(train_data, "\n", test_data)

# %% [markdown]
# ## 1. Patch partition, linear embedding, stages
#
# Swin-T on a 224-px RGB image: 4x4 patches of $4\cdot 4\cdot 3 = 48$ values each, a linear embedding
# to $C = 96$ (one strided convolution, as in chapter 03, but **no class token**), then four stages.
# The shapes after each, from `swin_t` itself (its parts called one after the other):

# %%
swin_t = create_model("swin_t")
print(f"swin_t: {sum(p.numel() for p in swin_t.parameters()):,} parameters (torchvision: 28,288,354)")
assert sum(p.numel() for p in swin_t.parameters()) == 28_288_354
x = torch.randn(1, 3, 224, 224)
print(f"{'input':30s} {tuple(x.shape)}   (B, 3, H, W)")
print(f"{'patch partition (4x4 x 3 = 48)':30s} {tuple(rearrange(x, 'b c (h p) (w q) -> b h w (p q c)', p=4, q=4).shape)}")
with torch.no_grad():
    z = swin_t.patch_norm(rearrange(swin_t.patch_embed(x), "b c h w -> b h w c"))
    print(f"{'linear embedding to C':30s} {tuple(z.shape)}   (B, H/4, W/4, C)")
    for i, blocks in enumerate(swin_t.stages):
        for block in blocks:
            z, _ = block(z)
        print(f"{f'stage {i + 1} ({len(blocks)} blocks)':30s} {tuple(z.shape)}")
        if i < len(swin_t.merges):
            z = swin_t.merges[i](z)
            print(f"{'  patch merging':30s} {tuple(z.shape)}   half the resolution, twice the width")
del swin_t

# %% [markdown]
# Like a CNN's pyramid (chapter 00): 56x56 → 28x28 → 14x14 → 7x7 positions, 96 → 768 channels. Each
# stage works on $M\times M = 7\times 7$ windows: 64 windows in stage 1, one window in stage 4 (where
# the window is the whole map, so there is nothing to shift). A pyramid of feature maps at several
# resolutions is what detection and segmentation heads need for objects of many sizes, which a plain
# ViT (one resolution throughout) does not give.
#
# **Patch merging** halves the resolution: each 2x2 neighbourhood of tokens is concatenated ($4C$
# values), normalised and projected to $2C$, like a strided convolution that doubles the channels.
# From scratch, against the package's `PatchMerging`:

# %%
merge = PatchMerging(8)
zm = torch.randn(2, 4, 4, 8)                                                     # (B, H, W, C)
neighbours = [zm[:, 0::2, 0::2], zm[:, 1::2, 0::2], zm[:, 0::2, 1::2], zm[:, 1::2, 1::2]]  # torchvision's order
merged = merge.reduction(merge.norm(torch.cat(neighbours, dim=-1)))            # (B, H/2, W/2, 4C) -> 2C
assert torch.allclose(merged, merge(zm), atol=1e-6)
print("patch merging:", tuple(zm.shape), "-> concatenate 2x2:", tuple(torch.cat(neighbours, -1).shape),
      "-> LayerNorm, linear:", tuple(merged.shape))

# %% [markdown]
# The course's small Swin for this profile (`recipe("swin")`), stage by stage: its feature map, its
# windows, and which blocks shift.

# %%
swin_small = recipe("swin").build(train_data)
cfg_s = swin_small.config
side = cfg_s.image_size // cfg_s.patch_size
for i, blocks in enumerate(swin_small.stages):
    shifts = [b.attn.shift_size if cfg_s.window_size < side else 0 for b in blocks]
    whole = " (the whole map: plain MSA, nothing to shift)" if cfg_s.window_size >= side else ""
    print(f"stage {i + 1}: {side}x{side} tokens of width {cfg_s.dim * 2 ** i}, {cfg_s.num_heads[i]} heads, "
          f"{(side // min(cfg_s.window_size, side)) ** 2} window(s) of {min(cfg_s.window_size, side)}x"
          f"{min(cfg_s.window_size, side)}{whole}, blocks "
          + " ".join(f"SW-MSA (shift {sh})" if sh else "W-MSA" for sh in shifts))
    side //= 2
print(f"patch {cfg_s.patch_size}: a stage-1 window covers {cfg_s.window_size * cfg_s.patch_size} pixels across; "
      f"{sum(p.numel() for p in swin_small.parameters()):,} parameters")

# %% [markdown]
# Each block is a pre-LN Transformer block (chapter 02) whose attention is windowed; two consecutive
# blocks of a stage (Swin eq. 3), $z^{l-1}$ the input tokens:
#
# $$\hat z^{l} = \text{W-MSA}(\text{LN}(z^{l-1})) + z^{l-1}, \qquad z^{l} = \text{MLP}(\text{LN}(\hat z^{l})) + \hat z^{l},$$
# $$\hat z^{l+1} = \text{SW-MSA}(\text{LN}(z^{l})) + z^{l}, \qquad z^{l+1} = \text{MLP}(\text{LN}(\hat z^{l+1})) + \hat z^{l+1}.$$
#
# A stage whose map is no larger than the window (here the last one) has a single window: W-MSA there
# is plain MSA (with the relative position bias of section 4, which a ViT's MSA does not have), and there
# is nothing to shift.
#
# ## 2. Windows and window attention (W-MSA)
#
# The feature map is cut into non-overlapping $M\times M$ windows; self-attention runs inside each
# window only. With the windows as the batch, that is one call of chapter 02's multi-head attention:

# %%
img = test_data.images[0]
p_draw, m_draw = cfg_s.patch_size, cfg_s.window_size                    # the course Swin's stage 1
fig, ax = plt.subplots(figsize=(3.8, 3.8))
ax.imshow(analysis.to_display(img), cmap="gray" if C == 1 else None)
for k in range(0, H + 1, p_draw):
    ax.axhline(k - 0.5, color="tab:blue", lw=0.4), ax.axvline(k - 0.5, color="tab:blue", lw=0.4)
for k in range(0, H + 1, m_draw * p_draw):
    ax.axhline(k - 0.5, color="tab:red", lw=2.5), ax.axvline(k - 0.5, color="tab:red", lw=2.5)
ax.set(title=f"stage 1: {m_draw}x{m_draw}-token windows (red)\nof {p_draw}x{p_draw}-pixel patches (blue)",
       xticks=[], yticks=[])
plt.show()

torch.manual_seed(0)
dim, heads, m = 16, 2, 4
wattn = WindowAttention(dim, heads, window_size=m).eval()
feature = torch.randn(2, 8, 8, dim)                                        # (B, H, W, C)
windows = rearrange(feature, "b (nh m1) (nw m2) c -> (b nh nw) (m1 m2) c", m1=m, m2=m)  # (B*nW, M*M, C)
bias = wattn.relative_position_bias()                                      # (heads, M*M, M*M), section 4
out, _ = wattn.attn(windows, bias=bias[None])                              # attention inside each window
out = rearrange(out, "(b nh nw) (m1 m2) c -> b (nh m1) (nw m2) c", nh=2, nw=2, m1=m, m2=m)
print("feature map", tuple(feature.shape), "-> windows", tuple(windows.shape), "-> back", tuple(out.shape))
with torch.no_grad():
    assert torch.allclose(out, wattn(feature)[0], atol=1e-6)
assert torch.equal(window_reverse(window_partition(feature, m), m, 8, 8), feature)

# %% [markdown]
# Each red square is one window, each thin blue square one token (a patch): tokens inside a window
# attend to each other and to nothing outside. A
# token on a window's border never sees its neighbour across the line, which is what the shift fixes.
#
# ## 3. The shifted windows: a cyclic shift and its mask
#
# SW-MSA moves the window grid by $s = \lfloor M/2\rfloor$ (3 for $M = 7$). Done naively, that makes more
# windows, some of them small. Swin instead **rolls** the feature map by $-s$ in both directions (`torch.roll`), so the regular
# grid of windows now covers shifted positions, and the windows on the bottom and right border hold
# pieces from opposite borders of the image. Those pieces were not neighbours, so a **mask** keeps
# them from attending to each other; after attention the map is rolled back. Step by step, on an
# 8x8 map with $M = 4$, shift 2:

# %%
hh = ww = 8
m, s = 4, 2
ij = torch.arange(hh * ww).view(hh, ww)
regions = shift_regions(hh, ww, m, s)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
axes[0].imshow(ij, cmap="viridis")
for (r, c), v in np.ndenumerate(ij.numpy()):
    axes[0].text(c, r, v, ha="center", va="center", fontsize=7, color="white")
axes[0].set(title="1. the feature map (token numbers)")
rolled = torch.roll(ij, shifts=(-s, -s), dims=(0, 1))
axes[1].imshow(regions, cmap="tab10", vmin=0, vmax=9)
for (r, c), v in np.ndenumerate(rolled.numpy()):
    axes[1].text(c, r, v, ha="center", va="center", fontsize=7)
axes[1].set(title=f"2. rolled by ({-s}, {-s}): colour = region")
for ax in axes[:2]:
    for k in range(0, hh + 1, m):
        ax.axhline(k - 0.5, color="black", lw=2), ax.axvline(k - 0.5, color="black", lw=2)
    ax.set(xticks=[], yticks=[])
mask = shift_attention_mask(hh, ww, m, s)                                   # (nW, M*M, M*M)
axes[2].imshow(rearrange(mask.float(), "(a b) i j -> (a i) (b j)", a=2), cmap="gray")
axes[2].set(title="3. attention mask per window (white: may attend)", xlabel="key token in the window",
            ylabel="query token in the window")
for k in range(0, 2 * m * m + 1, m * m):
    axes[2].axhline(k - 0.5, color="tab:red", lw=2), axes[2].axvline(k - 0.5, color="tab:red", lw=2)
ticks = list(range(0, 2 * m * m, 4))
axes[2].set_xticks(ticks, [t % (m * m) for t in ticks]), axes[2].set_yticks(ticks, [t % (m * m) for t in ticks])
fig.tight_layout()
plt.show()
allowed = mask.float().mean(dim=(1, 2))
print("share of query-key pairs allowed in each of the 4 windows:", [f"{a:.2f}" for a in allowed.tolist()])
naive = (math.ceil((hh - s) / m) + 1) ** 2          # a grid moved by s: cut pieces at both borders
print(f"a naively shifted grid would cut this map into {naive} windows of unequal sizes; the cyclic shift keeps "
      f"{(hh // m) ** 2} windows of {m}x{m}, so SW-MSA does the multiply-adds of W-MSA (plus a roll and a mask)")

# %% [markdown]
# Panel 2: after the roll, the top-left window holds one region (all allowed), the top-right and
# bottom-left windows two regions each, and the bottom-right window four (the paper's figure 4 calls
# these pieces A, B and C). The regions come from cutting each axis at $H - M$ and $H - s$: the
# bottom-right window holds four 2x2 pieces from the four corners of the map, tokens {0, 1, 8, 9},
# {6, 7, 14, 15}, {48, 49, 56, 57} and {54, 55, 62, 63}, which were never neighbours. Panel 3 is each window's $16\times 16$ mask (the four
# red-bordered blocks, in the same order as the windows): white where the query and key are in the
# same region. The printed line gives the share of allowed pairs per window (1, 1/2, 1/2, 1/4). The
# mask goes into the attention as $-\infty$ on the forbidden scores; after attention, `torch.roll`
# by $(+2, +2)$ puts every token back. Rolling and rolling back is the identity:

# %%
f = torch.randn(1, hh, ww, 3)
assert torch.equal(torch.roll(torch.roll(f, (-s, -s), (1, 2)), (s, s), (1, 2)), f)
assert mask[0].all() and not mask[3].all()
assert torch.allclose(allowed, torch.tensor([1.0, 0.5, 0.5, 0.25]))   # the shares printed above

# %% [markdown]
# ## 4. The relative position bias
#
# Inside a window, two tokens at rows/columns $(y_1, x_1)$ and $(y_2, x_2)$ have a relative offset
# $(y_1-y_2, x_1-x_2)$, each between $-(M-1)$ and $M-1$: $(2M-1)^2$ possible offsets. Swin learns one
# bias per offset and head (a $(2M-1)^2 \times$ heads table) and adds it to the scores, eq. 4:
# $\mathrm{softmax}(QK^\top/\sqrt{d} + B)V$. The index table says which row each pair reads; for
# $M = 3$ (9 tokens, 25 offsets):

# %%
mw = 3
yx = torch.stack(torch.meshgrid(torch.arange(mw), torch.arange(mw), indexing="ij")).flatten(1)   # (2, M*M): (y, x)
dy, dx = yx[0][:, None] - yx[0][None, :], yx[1][:, None] - yx[1][None, :]                     # offsets, -(M-1)..M-1
index = (dy + mw - 1) * (2 * mw - 1) + (dx + mw - 1)            # row of the (2M-1)^2 table
assert torch.equal(index, relative_position_index(mw))
print(index.numpy())
assert index[0, 0] == index[4, 4] == 12          # offset (0, 0) is the middle row of the 25
assert index[0, 4] == index[4, 8]                  # the same offset (-1, -1) reads the same row

# %% [markdown]
# Shift each offset into $0..2M-2$ and read the pair as a two-digit number in base $2M-1$: row
# $(dy + M - 1)(2M - 1) + (dx + M - 1)$ of the table. Row $i$ of the printed matrix is a query token,
# column $j$ a key; equal numbers are equal offsets. The diagonal (offset
# 0) is 12, the centre of the 5x5 table of offsets. Since the bias depends only on the offset, the
# same table serves every window, which is what "translation-invariant inside a window" means.

# %% [markdown]
# ## 5. The cost of MSA and W-MSA as the image grows
#
# Liu et al. (section 3.2, eq. 1 and 2) count the multiply-adds of one attention layer on an
# $h\times w$ map with $C$ channels:
#
# $$\Omega(\text{MSA}) = 4hwC^2 + 2(hw)^2C, \qquad \Omega(\text{W-MSA}) = 4hwC^2 + 2M^2hwC.$$
#
# Both pay $4hwC^2$ for the projections ($Q$, $K$, $V$ and the output: four $C\times C$ matrices per
# token). MSA then multiplies every query with every key, $(hw)^2C$ for $QK^\top$ and as much for the
# weighted sum of the values; W-MSA does that only inside each window, $M^2$ keys per query. So MSA's
# cost grows with the *square* of the number of tokens $hw$, W-MSA's linearly.
#
# **Counting.** Torch's `FlopCounterMode` records every matrix product a forward pass runs. We count
# one layer of each on the explicit attention path (`need_weights=True`: $QK^\top$ and the weighted sum as
# plain products) on the `meta` device, which has shapes but no data: nothing is computed, at any size.

# %%
def formula(n, c, m):
    """Liu et al. eq. 1 and 2: multiply-adds of MSA and W-MSA on n = hw tokens of width c, M x M windows."""
    return 4 * n * c * c + 2 * n * n * c, 4 * n * c * c + 2 * m * m * n * c


def counted(layer, x):
    """Multiply-adds of one forward pass of `layer` on `x`, and the number of attention weights it
    writes out, counted by FlopCounterMode on the meta device (shapes only: free at any size)."""
    layer = copy.deepcopy(layer).to("meta")
    with flop_counter() as counter:
        _, weights = layer(x.to("meta"), need_weights=True)
    return counter.get_total_flops() // 2, weights.numel()     # 2 FLOPs per multiply-add


msa = MultiHeadAttention(COST_DIM, 2).eval()
wmsa = WindowAttention(COST_DIM, 2, window_size=COST_WINDOW).eval()
n_tok = np.array([side * side for side in COST_SIDES])
count = np.array([counted(msa, torch.zeros(1, side * side, COST_DIM)) + counted(wmsa, torch.zeros(1, side, side, COST_DIM))
                  for side in COST_SIDES])                  # columns: MSA MACs, weights, W-MSA MACs, weights
f_msa, f_wmsa = map(np.array, zip(*[formula(n, COST_DIM, COST_WINDOW) for n in n_tok]))
print(f"{'tokens hw':>10s} {'MSA counted':>14s} {'eq. 1':>14s} {'W-MSA counted':>14s} {'eq. 2':>14s}")
for n, (c_msa, _, c_wmsa, _), a, b in zip(n_tok, count, f_msa, f_wmsa):
    print(f"{n:10,d} {c_msa:14,d} {a:14,d} {c_wmsa:14,d} {b:14,d}")
assert (count[:, 0] == f_msa).all() and (count[:, 2] == f_wmsa).all()   # the paper's formulas, exactly

# %% [markdown]
# The counts are the formulas to the multiply-add: the quadratic term is real. (The softmax, the
# relative position bias and the mask are additions and exponentials, which the formulas and the
# counter both leave out.)
#
# **Timing.** Whether a machine's time follows the count is another question: a call has a fixed
# overhead (launching kernels, cutting windows), and kernels run faster on larger matrices. Both
# bend a measured slope when the work per call changes with the size, as it does when one map grows.
# So every call below holds the same number of tokens, TOKENS_PER_CALL: at side $s$ a batch of
# $\text{TOKENS\_PER\_CALL}/s^2$ maps. Per call, W-MSA then does the same work at every size and MSA more as
# the maps (and their attention matrices) grow; the time **per map** is the call's time over the batch.
#
# Thresholds, fixed before the run (C7a): over the three largest sizes, the fitted log-log slope of the
# time per map lies in MSA_BAND = 1.6 to 2.4 for MSA (quadratic: the formula's slope there is just
# under 2) and in WMSA_BAND = 0.75 to 1.25 for W-MSA (linear: 1). The bands are wide because a CPU's
# rate of multiply-adds is not constant across sizes (the figure below measures it), and they are
# two-sided: a W-MSA slope far below 1 would be overhead, not "better than linear". The exact counts
# above check the implementation against the formulas; the timing is what tests the claim on a machine.

# %%
def median_time(fn, repeats=5):
    sync = torch.cuda.synchronize if DEVICE.type == "cuda" else (lambda: None)   # GPU calls return early
    fn()                                                           # warm-up
    times = []
    for _ in range(vitcourse.rehearsal.repeats(repeats)):         # once in a rehearsal (make rehearsal)
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


TOKENS_PER_CALL = max(COST_SIDES) ** 2
assert all(TOKENS_PER_CALL % (side * side) == 0 for side in COST_SIDES)
msa, wmsa = msa.to(DEVICE), wmsa.to(DEVICE)
per_map = []
with torch.no_grad():
    for side in tqdm(COST_SIDES, desc="sizes"):
        batch = TOKENS_PER_CALL // (side * side)
        fmap = torch.randn(batch, side, side, COST_DIM, device=DEVICE)
        tokens = rearrange(fmap, "b h w c -> b (h w) c")
        per_map.append((median_time(lambda: msa(tokens)) / batch, median_time(lambda: wmsa(fmap)) / batch))
t_msa, t_wmsa = map(np.array, zip(*per_map))
slope = lambda y: np.polyfit(np.log(n_tok[-3:]), np.log(y[-3:]), 1)[0]  # noqa: E731  (over the 3 largest)
slopes = {"MSA time": slope(t_msa), "W-MSA time": slope(t_wmsa), "MSA formula": slope(f_msa),
          "W-MSA formula": slope(f_wmsa)}
fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(11, 4))
ax_t.loglog(n_tok, t_msa * 1e3, "o-", label=f"MSA measured (slope {slopes['MSA time']:.2f})")
ax_t.loglog(n_tok, t_wmsa * 1e3, "s-", label=f"W-MSA measured (slope {slopes['W-MSA time']:.2f})")
scale = t_msa[-1] / f_msa[-1]
ax_t.loglog(n_tok, f_msa * scale * 1e3, "--", color="tab:blue", alpha=0.6,
            label=f"eq. 1, scaled to MSA's last point (slope {slopes['MSA formula']:.2f})")
ax_t.loglog(n_tok, f_wmsa * scale * 1e3, "--", color="tab:orange", alpha=0.6,
            label=f"eq. 2, same scale (slope {slopes['W-MSA formula']:.2f})")
ax_t.set(xlabel="tokens per map hw (log)", ylabel="forward time per map (ms, log)",
         title=f"one attention layer, C = {COST_DIM}, M = {COST_WINDOW},\n{TOKENS_PER_CALL:,} tokens in every call")
ax_t.legend(fontsize=7)
rate = {"MSA": f_msa / t_msa, "W-MSA": f_wmsa / t_wmsa}                 # multiply-adds per second
for k, (name, r_) in enumerate(rate.items()):
    ax_r.semilogx(n_tok, r_ / 1e9, "o-" if k == 0 else "s-", label=name)
ax_r.set(xlabel="tokens per map hw (log)", ylabel="G multiply-adds per second", ylim=(0, None),
         title="what the machine achieved (eq. 1-2 / time)")
ax_r.legend(fontsize=8)
fig.tight_layout()
plt.show()
print("fitted slopes over the three largest sizes: " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
print(f"at {n_tok[-1]:,} tokens W-MSA takes {t_wmsa[-1] / t_msa[-1]:.1%} of MSA's time (eq. 1-2: "
      f"{f_wmsa[-1] / f_msa[-1]:.1%}); the attention weights it would write out are {count[-1, 3] * 4 / 2**20:.2f} MiB "
      f"against MSA's {count[-1, 1] * 4 / 2**20:.1f} MiB (float32, the need_weights path)")
print(f"multiply-adds per second, smallest to largest size: MSA {rate['MSA'][0] / 1e9:.2f} -> {rate['MSA'][-1] / 1e9:.2f} G/s, "
      f"W-MSA {rate['W-MSA'][0] / 1e9:.2f} -> {rate['W-MSA'][-1] / 1e9:.2f} G/s")
c7a_in_band = MSA_BAND[0] <= slopes["MSA time"] <= MSA_BAND[1] and WMSA_BAND[0] <= slopes["W-MSA time"] <= WMSA_BAND[1]

# %% [markdown]
# On log-log axes a power law $t \propto n^k$ is a straight line of slope $k$: 2 for a quadratic cost, 1 for
# a linear one. Left: the time per map, with the formulas (dashed) scaled to MSA's largest point; the
# gap between the two solid lines widens as the maps grow. Right: the multiply-adds per second each
# layer achieved. Where that line is flat, time is proportional to the count and the measured slope is
# the formula's; where it rises, the machine got faster on the larger matrices and the slope comes out
# below the formula's. W-MSA's rate is not flat either (many small matrices), which is why its slope
# can come out a little below 1, and it runs at a lower rate than MSA, which is why its measured speed-up
# at the largest size is smaller than the formulas' (both printed). The printed weights sizes are what the explicit path would write out:
# $\text{heads}\cdot (hw)^2$ numbers for MSA, $\text{heads}\cdot hw\cdot M^2$ for W-MSA (fused kernels
# compute the same products without storing them).
#
# ## 6. Swin against a ViT of the same size, on small data
#
# The course's Swin for this profile (`recipe("swin")`) is sized to chapter 03's ViT
# (`recipe("vit")`) and trained by the ViT's recipe: the same learning rate and schedule, weight
# decay, label smoothing, augmentation, drop path, batches and number of steps. The architecture is the
# only difference. The Swin cuts smaller patches (more tokens in its first stage), so at about the
# same parameters its forward pass costs more FLOPs: both are printed.
#
# Each model is trained with every seed in SEEDS. A seed fixes the order of the batches and their
# augmentation for both models (a *paired* comparison), so the noise of the gain is the spread of the
# per-seed gains. Every run keeps its learning curve: its accuracy on the test images, and on its
# training batches, EVALS times during training. Nothing is chosen on the test images (no best step,
# no early stop): the curves only say how far training got, and whether the claim can be judged.
#
# **The regime** (fixed before the run): a claim about small data is about generalisation from few
# images, so (1) each model must be near convergence: its test accuracy (mean over seeds) rose less
# than PLATEAU = 0.5 point over its last 20% of steps; and (2) the data, not the steps, must be what
# limits it: its accuracy on the (clean) training images exceeds its test accuracy by at least
# OVERFIT = 5 points. (The learning rate decays to zero on a cosine, so condition 1 is easier to meet
# late in training than a constant rate would make it: condition 2 is the one that says the data ran out.)
#
# **The claim** (C7b): the Swin's mean paired gain over the ViT is at least SWIN_GAIN = 0.5 point, with a
# 95% interval above zero. The SL-ViT paper trains both from scratch on CIFAR and finds +0.9 point on
# CIFAR-10 and +3.1 on CIFAR-100, with a Swin about 2.6 times the parameters of its ViT; here the two
# are the same size, so we ask for about half of the smaller gain. The interval of three seeds may be
# wider than that: the verdict then says "inconclusive", which is not a NO.
#
# One more difference from the paper, printed in section 1: with windows of 7 on a 14x14 map, stage 1
# has 4 windows and one shifted block, and stage 2 is global attention. The locality prior is weaker
# here than in a Swin with many small windows per stage.

# %%
study = Study("07_swin_vs_vit")
test_loader = D.DeviceLoader(test_data, 1000, shuffle=False, device=DEVICE)
train_eval = D.DeviceLoader(train_data, 1000, shuffle=False, device=DEVICE)


def train_model(config: dict) -> dict:
    r = recipe(config["model"])
    vitcourse.seed_everything(config["seed"])
    model = r.build(train_data)
    history = train_for_steps(r, model, train_data, steps=config["steps"], seed=config["seed"], curve=test_loader,
                              evals=config["evals"], batch_size=config["batch"], checkpoint=study.checkpoint(config),
                              device=DEVICE)
    save_checkpoint(study.path(config).with_suffix(".pt"), model=model)  # kept for the analysis below
    return {"metrics": {"test_acc": evaluate(model, test_loader)["acc"], "train_acc": evaluate(model, train_eval)["acc"],
                        "seconds": sum(e["seconds"] for e in history.epochs),
                        "params": sum(p.numel() for p in model.parameters())},
            "history": history.epochs}


def trained_model(name: str, config: dict):
    """The weights of a finished run, from its checkpoint."""
    model = recipe(name).build(train_data)
    load_checkpoint(study.path(config).with_suffix(".pt"), model=model, restore_rng=False)
    return model.to(DEVICE).eval()


runs, configs = {}, {}
for name, seed in tqdm([(n, s) for n in ("vit", "swin") for s in SEEDS], desc="runs"):
    configs[name, seed] = {"model": name, "recipe": recipe(name).to_dict(), "data": DATASET, "n_train": len(train_data),
                           "steps": STEPS, "batch": BATCH, "evals": EVALS, "seed": seed}
    runs[name, seed] = study.run(configs[name, seed], train_model)
trained = {name: trained_model(name, configs[name, SEEDS[0]]) for name in ("vit", "swin")}
mflops = {name: analysis.forward_flops(trained[name], train_data.shape, device=DEVICE) / 1e6 for name in trained}
acc = {name: [runs[name, s]["metrics"]["test_acc"] for s in SEEDS] for name in trained}
for name in trained:
    m = runs[name, SEEDS[0]]["metrics"]
    print(f"{recipe(name).model:22s} {m['params']:9,d} parameters  {mflops[name]:6.1f} MFLOPs per image (2 per multiply-add)  test accuracy "
          f"{' '.join(f'{a:.4f}' for a in acc[name])} (mean {np.mean(acc[name]):.4f})  "
          f"{np.mean([runs[name, s]['metrics']['seconds'] for s in SEEDS]):.0f} s per run")
print(f"Swin / ViT: {runs['swin', SEEDS[0]]['metrics']['params'] / runs['vit', SEEDS[0]]['metrics']['params']:.2f}x "
      f"the parameters, {mflops['swin'] / mflops['vit']:.2f}x the FLOPs; {STEPS} steps of {BATCH} "
      f"images on {len(train_data):,} training images ({STEPS * BATCH / len(train_data):.1f} passes)")

# %%
colors = {"vit": "tab:blue", "swin": "tab:orange"}
fig, ax = plt.subplots(figsize=(7, 4))
for (name, seed), run in runs.items():
    steps = [e["step"] for e in run["history"]]
    first = seed == SEEDS[0]
    ax.plot(steps, [e["test_acc"] for e in run["history"]], "-", color=colors[name], alpha=0.8,
            label=f"{name}: test" if first else None)
    ax.plot(steps, [e["train_acc"] for e in run["history"]], ":", color=colors[name], alpha=0.8,
            label=f"{name}: training batches" if first else None)
ax.axvspan(0.8 * STEPS, STEPS, color="grey", alpha=0.15, label="last 20% of the steps")
ax.set(xlabel="step", ylabel="accuracy", title=f"Swin and ViT on {len(train_data):,} images, {len(SEEDS)} seed(s) each")
ax.legend(fontsize=8)
plt.show()
steps = [e["step"] for e in runs["vit", SEEDS[0]]["history"]]
mean_curve = {name: np.mean([[e["test_acc"] for e in runs[name, s]["history"]] for s in SEEDS], axis=0) for name in trained}
gap = {name: np.mean([runs[name, s]["metrics"]["train_acc"] - acc[name][i] for i, s in enumerate(SEEDS)]) for name in trained}
c7b_regime = regime(steps, mean_curve, PLATEAU, gaps=gap, overfit=OVERFIT)   # vitcourse.claims: the two conditions
print(c7b_regime.report("C7b"))

# %% [markdown]
# Solid lines are the test accuracy, dotted ones the accuracy on the augmented training batches of
# each stretch of steps, one line per seed (the batches of the two models' runs with one seed are the same). A model near convergence
# has a flat solid line in the grey band; a model limited by its data has its dotted line well above
# the solid one. The printed lines check both conditions for every run.
#
# The gain, seed by seed (the same seed gave both models the same batches):

# %%
gain = paired(acc["swin"], acc["vit"])
print(f"Swin - ViT test accuracy: {gain.describe()}")
for name in trained:
    train_accs = [runs[name, s]["metrics"]["train_acc"] for s in SEEDS]
    print(f"{name:5s} clean train accuracy {np.mean(train_accs):.4f}, test {np.mean(acc[name]):.4f}")
fits_more = np.mean([runs["swin", s]["metrics"]["train_acc"] - runs["vit", s]["metrics"]["train_acc"] for s in SEEDS])
print(f"Swin - ViT: clean training accuracy {fits_more:+.4f}, test accuracy {gain.mean:+.4f} (means over seeds)")
if not gain.real:
    print("the test difference is within the noise of these seeds: there is no gain here to explain")
elif gain.mean > fits_more:
    print("the Swin gains more on the test images than on its training images: it generalises better, not only fits more")
else:
    print("the Swin's test gain is no larger than its extra fitting: it has learned its training images better, "
          "not generalised better")

# %% [markdown]
# The first line is the claim's measurement: the mean gain, its 95% interval from the seeds' spread,
# and whether it stands out from the noise. The next lines are the second measurement, which says
# what kind of gain it is: a model that fits its training images better and gains as much on the test
# images has generalised no better, it has only learned more; a better inductive bias shows as a test
# gain larger than the training one.
#
# ## 7. Attention inside a window
#
# Where does a token look inside its window, in the trained Swin? For one test image: the first
# stage's first block (regular windows), a query token in the middle of a window, each head's
# weights over the window's tokens.

# %%
swin = trained["swin"]
x = next(iter(test_loader))[0][:1]
with torch.no_grad():
    _, attentions = swin(x, return_attention=True)
a = attentions[0]                                             # (nW, heads, M*M, M*M), image 0
mw = swin.stages[0][0].attn.window_size
query = (mw // 2) * mw + mw // 2
n_side = swin.config.image_size // swin.config.patch_size // mw  # windows per row
window = a.shape[0] // 2
wy, wx = divmod(window, n_side)
px = mw * swin.config.patch_size                              # a window's width in pixels
fig, axes = plt.subplots(1, a.shape[1] + 1, figsize=(3 * (a.shape[1] + 1) + 1, 3))
axes[0].imshow(analysis.to_display(x[0].cpu(), test_data.mean, test_data.std), cmap="gray" if C == 1 else None)
axes[0].add_patch(plt.Rectangle((wx * px - 0.5, wy * px - 0.5), px, px, fill=False, color="tab:red", lw=2))
axes[0].set(title=f"input, window {window} in red", xticks=[], yticks=[])
vmax = a[window, :, query].max().item()
for h in range(a.shape[1]):
    shown = axes[h + 1].imshow(a[window, h, query].view(mw, mw).cpu(), cmap="magma", vmin=0, vmax=vmax)
    axes[h + 1].scatter([mw // 2], [mw // 2], marker="x", color="cyan")
    axes[h + 1].set(title=f"head {h + 1}", xticks=[], yticks=[])
fig.colorbar(shown, ax=axes[1:].tolist(), label="attention weight")
fig.suptitle(f"stage 1, block 1 (seed {SEEDS[0]}): where the centre token (x) of window {window} looks", y=1.06)
plt.show()
peak_at = [divmod(int(a[window, h, query].argmax()), mw) for h in range(a.shape[1])]
print("each head's largest weight at (row, column) offset from the query: "
      + ", ".join(f"head {h + 1} ({r - mw // 2:+d}, {c - mw // 2:+d})" for h, (r, c) in enumerate(peak_at)))
print("largest weight per head:", [f"{v:.2f}" for v in a[window, :, query].amax(-1).tolist()],
      f"(uniform: {1 / mw ** 2:.3f})")
local = [h + 1 for h, (r, c) in enumerate(peak_at) if max(abs(r - mw // 2), abs(c - mw // 2)) <= 1]
print(f"heads peaking within one token of the query: {local or 'none'} (one image, one query: an example, not a measurement)")

# %% [markdown]
# Each map is one head's attention from the centre token (x) over its $M\times M$ window (the red
# square on the input), on one colour scale: all a token can see in one block. The printed lines say
# where each head looks most, relative to the query, and how its largest weight compares with
# uniform attention. Heads whose peak is next to the query (within one token, printed below) have
# learned to look locally; a largest weight close to uniform means the head spreads its attention
# over the whole window.
#
# ## 8. Claims
#
# The thresholds, stated in sections 5 and 6 and set in the setup cell before any run: C7a holds when
# the fitted slopes of the time per map (three largest sizes, constant tokens per call) lie in
# MSA_BAND for MSA and WMSA_BAND for W-MSA; C7b holds when its regime is reached and the Swin's mean
# paired gain is at least SWIN_GAIN with a 95% interval above zero. Out of its regime, C7b says
# "regime not reached" and does not hold; a verdict of "inconclusive" means the seeds' noise is wider
# than the threshold (a NO in the table, but not evidence against the claim).

# %%
claims = Claims("07_swin")
claims.add("C7a", "W-MSA cost grows linearly with the number of tokens, MSA quadratically",
           measured=(f"multiply-adds counted = eq. 1-2 at every size; time per map ({TOKENS_PER_CALL:,} tokens per "
                     f"call) slopes MSA {slopes['MSA time']:.2f} (band {MSA_BAND[0]}-{MSA_BAND[1]}), W-MSA "
                     f"{slopes['W-MSA time']:.2f} (band {WMSA_BAND[0]}-{WMSA_BAND[1]}); formulas "
                     f"{slopes['MSA formula']:.2f} / {slopes['W-MSA formula']:.2f}, up to {n_tok[-1]:,} tokens"),
           holds=c7a_in_band)
c7b_measured = (f"{len(train_data):,} images, {len(SEEDS)} paired seed(s): Swin {np.mean(acc['swin']):.4f} "
                f"({runs['swin', SEEDS[0]]['metrics']['params']:,} params, {mflops['swin']:.1f} MFLOPs) vs ViT "
                f"{np.mean(acc['vit']):.4f} ({runs['vit', SEEDS[0]]['metrics']['params']:,}, {mflops['vit']:.1f}): "
                f"{gain.describe()}; {gain.judge(SWIN_GAIN)}")
claims.add("C7b", "Swin beats a ViT of similar size on small data",
           measured=c7b_regime.note(c7b_measured),
           holds=c7b_regime.reached and gain.mean >= SWIN_GAIN and gain.real)
claims.show()

# %% [markdown]
# Where a claim says NO, its second measurement says why. For C7a: the multiply-adds per second of
# section 5 (a time follows a count only where that rate is flat), beside the counts, which match the
# formulas exactly. For C7b: the learning curves and the two regime conditions (a run that has not
# converged, or that is not limited by its data, is not in the claim's regime), and the training
# accuracies of section 6 (a gain made of extra fitting is not a better inductive bias).

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
# * `ex.window_partition.hint()` prints a hint, another on each call;
# * `ex.window_partition.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch07 as ex

# %% tags=["exercise"]
def window_partition(x, window):
    """(B, H, W, C) -> (B * nW, M*M, C): non-overlapping M x M windows, row-major, like
    `vitcourse.models.swin.window_partition`."""
    raise NotImplementedError("write window_partition, then run this cell")


ex.window_partition.check(window_partition)

# %% tags=["exercise"]
def window_reverse(windows, window, h, w):
    """The inverse of window_partition: (B * nW, M*M, C) -> (B, H, W, C)."""
    raise NotImplementedError("write window_reverse, then run this cell")


ex.window_reverse.check(window_reverse)

# %% tags=["exercise"]
def w_msa_flops(h, w, c, window):
    """Multiply-adds of one W-MSA layer on an h x w map of width C with M x M windows (Swin eq. 2; an int)."""
    raise NotImplementedError("write w_msa_flops, then run this cell")


ex.w_msa_flops.check(w_msa_flops)

# %% [markdown]
# ## More exercises (experiments to run)
#
# 1. Remove the shift (every block regular). How does the accuracy of section 6 change? Which tokens
#    can no longer exchange information within one stage?
# 2. Replace the `-inf` mask by Swin's original `-100` added to the scores. Is there any difference
#    in the output?
# 3. Compute $\Omega$(MSA) and $\Omega$(W-MSA) for Swin-T's first stage (56x56, C = 96, M = 7). How
#    many times cheaper is W-MSA?
# 4. Swap the relative position bias for an absolute position embedding added after the patch
#    embedding (as in ViT). Train both on the small subset and compare.
