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
# 4. Train a ViT from scratch, then read it: position-embedding similarity, mean attention distance
#    per head, attention rollout.
# 5. Change the resolution of a trained ViT by interpolating its position embedding: pre-train at a
#    low resolution and fine-tune at a high one (ViT section 3.2), and test above the training
#    resolution after RandomResizedCrop (FixRes).
# 6. Say which inductive biases of a CNN (chapter 00) the ViT lacks, and see it in the numbers: the
#    ViT against chapter 00's ResNet on the same data, and on shifted images.
#
# Claim to reproduce (**C3**): *learned position embeddings show 2-D row/column structure; early
# layers mix local and global heads.* Section 10 also judges the from-scratch accuracy and the two
# resolution results.

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

import dataclasses
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange

from vitcourse import analysis, budget
from vitcourse import data as D
from vitcourse.claims import Claims
from vitcourse.models import create_model
from vitcourse.models.vit import LinearPatchEmbedding, PatchEmbedding, ViT, config_of, patchify
from vitcourse.nn import EncoderLayer
from vitcourse.recipes import recipe, recipe_run_dir, train_recipe
from vitcourse.train import evaluate, fit

DEVICE = vitcourse.device()

# Every run size comes from the profile (smoke: CI seconds; cpu: Fashion-MNIST in minutes;
# gpu: CIFAR-10, the real run). The training recipe of the course ViT lives in vitcourse.recipes,
# where chapters 04-07 and the benchmarks read it too.
DATASET = D.dataset_for_profile()                       # synthetic | fashion_mnist | cifar10
R = recipe("vit")
print(R)
N_TRAIN = budget(smoke=1024, cpu=None, gpu=None)         # None: the whole training set
TARGET_ACC = budget(smoke=None, cpu=0.90, gpu=0.85)      # mean test accuracy over seeds the recipe must reach
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
# The same on this chapter's data. Patches enter in row-major order: patch $k$ sits at row
# $\lfloor k/g \rfloor$, column $k \bmod g$ of the $g\times g$ grid.

# %%
train_data, test_data = D.load(DATASET, "train"), D.load(DATASET, "test")
if N_TRAIN is not None:
    train_data = D.subset(train_data, N_TRAIN)
C, H, W = train_data.shape
print(train_data, "\n", test_data)
cfg = config_of(R.model, image_size=H, in_channels=C, num_classes=len(train_data.classes))
fig = analysis.plot_patches(test_data.images[0], cfg.patch_size)
fig.suptitle(f"{DATASET}: class '{test_data.classes[test_data.labels[0]]}'")

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
assert dict((r[0], r[5]) for r in rows)["vit_base_patch16_224"] == 86_567_656

# %% [markdown]
# Almost all parameters are in the encoder: $12 D^2$ per layer (attention $4D^2$, MLP $8D^2$), while
# the patch embedding has only $P^2 C D$ and the position embedding $(N+1) D$. The patch size
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
#   and timm. (The GELU of the paper is the nonlinearity of the encoder's two-layer MLP, eq. 3.)
# * The **position embedding** is learned, one vector per position (`nn.Parameter` of shape
#   $(N+1)\times D$). Nothing tells it the patches form a 2-D grid; section 6 looks at what it learns.
# * The encoder is chapter 02's, with the LayerNorm moved *before* each sublayer (**pre-LN**, eq. 2-3):
#
# $$z'_\ell = \mathrm{MSA}(\mathrm{LN}(z_{\ell-1})) + z_{\ell-1},\qquad
#   z_\ell = \mathrm{MLP}(\mathrm{LN}(z'_\ell)) + z'_\ell$$
#
# The "vanilla" Transformer of 2017 normalises *after* the residual sum (post-LN,
# $z = \mathrm{LN}(z + \mathrm{Sublayer}(z))$). Wang et al. (2019) and Xiong et al. (2020) showed why
# the placement matters: in pre-LN the residual path from the loss to every layer is an identity, so
# gradients reach the first layers at a scale closer to the last ones'. We measure that on a 12-layer stack
# at initialisation: the gradient norm of each layer's weights, averaged over 5 initialisations.
# Both stacks end in a LayerNorm (post-LN by construction, pre-LN with the ViT's final norm), and the
# loss is a random projection of the output, squared. (A loss like `z.pow(2).mean()` would not do:
# after a LayerNorm it is the constant 1, and its "gradients" would be rounding noise.)

# %%
def layer_gradient_norms(norm_first, depth=12, dim=64, seeds=range(5)):
    """Mean over seeds of each layer's ||dL/dW_qkv||, L = mean((LN(z_L) p)^2) for a random p."""
    norms = torch.zeros(depth)
    for seed in seeds:
        torch.manual_seed(seed)
        layers = torch.nn.ModuleList(EncoderLayer(dim, 4, norm_first=norm_first) for _ in range(depth))
        z = torch.randn(8, 17, dim)
        for layer in layers:
            z, _ = layer(z)
        if norm_first:
            z = F.layer_norm(z, (dim,))        # the ViT's final LayerNorm
        (z @ torch.randn(dim)).pow(2).mean().backward()
        norms += torch.tensor([layer.attn.qkv.weight.grad.norm().item() for layer in layers]) / len(seeds)
    return norms.tolist()


pre, post = layer_gradient_norms(True), layer_gradient_norms(False)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(range(1, 13), pre, marker="o", label="pre-LN (ViT)")
ax.plot(range(1, 13), post, marker="s", label="post-LN (vanilla, chapter 02)")
ax.set(yscale="log", xlabel="layer", ylabel="gradient norm of W_qkv", title="Gradients at initialisation (5 seeds)")
ax.legend()
plt.show()
ratio = {"pre-LN": pre[-1] / pre[0], "post-LN": post[-1] / post[0]}
print(f"last/first layer gradient ratio: pre-LN {ratio['pre-LN']:.1f}, post-LN {ratio['post-LN']:.1f}")
flatter = min(ratio, key=ratio.get)
print(f"In this run the {flatter} gradients are the more even across depth; the other stack's last layer "
      f"gets {max(ratio.values()) / min(ratio.values()):.1f} times more gradient, relative to its first, than {flatter}'s.")

# %% [markdown]
# Where post-LN gradients grow towards the output (the last layers get the largest updates, the first
# ones the smallest), a large learning rate moves the last layers too far at the start: that is why
# post-LN needs a learning-rate warm-up (Xiong et al. 2020 show the gap widens with depth). The
# printed lines say how large the effect is for these 12 layers.
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
# smoothing 0.1 (the target gives 0.9 to the true class and spreads 0.1 over all classes, so the model
# is not pushed towards infinite logits), gradient clipping at 1, and random translations of a
# pixel or so as augmentation (`R.augment`). A ViT has to *learn* that a shifted image is the same
# image (section 9): the translations show it. The whole data set sits in memory on the device
# (`DeviceLoader`), and augmentation is batched there too. The cpu profile's model is narrow and
# shallow (64 wide, 4 layers) so that its 16 epochs take about 10 minutes on a 2-core laptop; how
# that recipe was chosen, and what wider models or stronger shifts cost, is in
# `benchmarks/RESULTS.md` (`make bench-accuracy` times it).

# %%
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
history = fit(model, train_loader, test_loader, epochs=R.epochs, **R.fit_args(), device=DEVICE,
              val_name="test", checkpoint=run / "checkpoint.pt")
train_seconds = sum(e["seconds"] for e in history.epochs)  # right after a resume too
test_acc = history.last["test_acc"]
print(f"{train_seconds / 60:.1f} min, {history.last['images_per_s']:.0f} images/s, test accuracy {test_acc:.4f}")
fig = history.plot(title=f"ViT on {DATASET}")
plt.show()
accs_so_far = history["test_acc"]
last_gain = accs_so_far[-1] - accs_so_far[-2] if len(accs_so_far) > 1 else float("nan")
print(f"After {R.epochs} epochs: training-batch accuracy {history.last['train_acc']:.4f}"
      f"{' (on augmented images)' if R.augment else ''}, test accuracy {test_acc:.4f}; the last epoch changed "
      f"test accuracy by {last_gain:+.4f} at a learning rate that the cosine schedule had brought down to "
      f"{(history['lr'][-2] if len(history.epochs) > 1 else R.lr):.1e}. Training-batch and test accuracy are about equal: the model under-fits, "
      "it does not over-fit.")

# %% [markdown]
# One run is one draw: another initialisation and another order of the data give another accuracy.
# The claim (section 10) is judged on the mean over seeds, so here the same recipe is trained again
# with other seeds (`train_recipe` is the cell above in one call, with its own checkpoint folder per
# seed). Nothing is chosen from these runs: there is no model selection, so no validation split is
# needed, and every number is reported on the test split under its name.

# %%
SEEDS = budget(smoke=(0,), cpu=(0, 1), gpu=(0, 1, 2))
seed_acc = {0: test_acc}
for seed in SEEDS[1:]:
    _, h = train_recipe(R, train_data, test_data, name="03_vit", seed=seed, progress=False, device=DEVICE)
    seed_acc[seed] = h.last["test_acc"]
    print(f"seed {seed}: test accuracy {seed_acc[seed]:.4f} after {sum(e['seconds'] for e in h.epochs) / 60:.1f} min")
accs = torch.tensor(list(seed_acc.values()))
mean_acc = accs.mean().item()
print(f"test accuracy over {len(accs)} seed(s): mean {mean_acc:.4f}, range {accs.min():.4f} to {accs.max():.4f}")

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
                            labels=[f"predicted: {test_data.classes[p]}" for p in predictions[:show]])
plt.show()

# %% [markdown]
# What do the maps show? A map can look meaningful and be close to uniform, so we measure. On
# Fashion-MNIST the background is black, so a patch shows the object when its mean pixel is above 5%
# (`analysis.object_patches`). If the class token reads the object, its attention share on object
# patches is above the share of object patches (which is what uniform attention gives).

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
          f"more than 5 points above uniform, and the rollout is {rollout_share - uniform_share:+.1%} from uniform: "
          f"{'it concentrates on the object' if rollout_share - uniform_share > 0.05 else 'close to uniform, so its picture says little'} (each rollout map is scaled to its own largest patch, so even a near-uniform "
          "map shows bright spots).")
else:
    print("The object mask needs a black background (Fashion-MNIST); on CIFAR read the maps by eye.")

# %% [markdown]
# ## 6. What the position embedding learned (ViT figure 7, left)
#
# Tile $(r, c)$ shows the cosine similarity between the position embedding of the patch at row $r$,
# column $c$ and those of all patches. Before training they are random vectors (similarity about 0
# except to itself). The paper's trained ViT-L/32 shows each tile bright around its own patch and
# along its own row and column: the model learned the grid from data. Three numbers say whether ours
# did: the mean similarity to patches in the same row or column against patches in neither, and the
# correlation of similarity with distance.

# %%
sim_init = analysis.position_embedding_similarity(model, init_pos_embed)
sim = analysis.position_embedding_similarity(model)
fig = analysis.plot_position_similarity(sim, title="position embeddings (cosine)")
plt.show()
structure, structure_init = analysis.position_structure(sim), analysis.position_structure(sim_init)
for name, s in [("initial", structure_init), ("trained", structure)]:
    print(f"{name:8s} same row/column {s['same_row_or_column']:+.3f}  elsewhere {s['elsewhere']:+.3f}  "
          f"correlation with distance {s['distance_correlation']:+.3f}")
print(f"position embedding norm per patch: {init_pos_embed[0, 1:].norm(dim=-1).mean():.2f} at initialisation, "
      f"{model.pos_embed.detach()[0, 1:].norm(dim=-1).mean().cpu():.2f} after training")

# %% [markdown]
# A second look, to see *which* structure was learned: rows and columns apart (a model may learn one
# direction better, for example if the data vary more from top to bottom), and the mean similarity at
# each distance on the grid.

# %%
dist_init, by_dist_init = analysis.similarity_by_distance(sim_init)
dist_bins, by_dist = analysis.similarity_by_distance(sim)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(dist_bins, by_dist, marker="o", label="trained")
ax.plot(dist_init, by_dist_init, marker="s", ls="--", label="at initialisation")
ax.axhline(0, color="gray", lw=0.5)
ax.set(xlabel="distance between patches (in patches)", ylabel="mean cosine similarity",
       title="position-embedding similarity against distance")
ax.legend()
plt.show()
print(f"same row {structure['same_row']:+.3f}, same column {structure['same_column']:+.3f}, elsewhere "
      f"{structure['elsewhere']:+.3f} (at initialisation: {structure_init['same_row']:+.3f}, "
      f"{structure_init['same_column']:+.3f}, {structure_init['elsewhere']:+.3f})")
print(f"mean similarity to the nearest patches (distance {dist_bins[0]:.0f}): {by_dist[0]:+.3f}; "
      f"to the farthest ({dist_bins[-1]:.1f}): {by_dist[-1]:+.3f}")
stronger = "rows" if structure["same_row"] > structure["same_column"] else "columns"
low_at = dist_bins[min(range(len(by_dist)), key=by_dist.__getitem__)]
print(f"In this run the similarity goes from {by_dist[0]:+.3f} at distance 1 to its lowest, {min(by_dist):+.3f}, at "
      f"distance {low_at:.1f}, and ends at {by_dist[-1]:+.3f} for the farthest pairs (the corners); patches sharing a "
      f"{stronger[:-1]} are the more alike ({max(structure['same_row'], structure['same_column']):+.3f} against "
      f"{min(structure['same_row'], structure['same_column']):+.3f}).")

# %% [markdown]
# Why would far patches be alike? On Fashion-MNIST the border of the image is nearly always black
# background: the border patches see the same input all the time and get no reason to differ. Two
# checks: the similarity-distance correlation over the interior patches only (the outer ring
# removed), and the similarity of patches that are almost always background.

# %%
g = cfg.grid_size
sim_flat = sim.reshape(g * g, g * g).cpu()
inner = torch.tensor([0 < r < g - 1 and 0 < c < g - 1 for r in range(g) for c in range(g)])
inner_structure = analysis.position_structure(
    rearrange(sim_flat[inner][:, inner], "(r c) (i j) -> r c i j", r=g - 2, i=g - 2))
if C == 1:
    background = 1 - analysis.object_patches(train_data.images[:10_000], cfg.patch_size).float().mean(0).flatten()
    always_bg = background > 0.9
    pairs = always_bg[:, None] & always_bg[None, :] & ~torch.eye(g * g, dtype=torch.bool)
    print(f"{int(always_bg.sum())} of {g * g} patches are background in over 90% of training images; their mean "
          f"similarity to each other is {sim_flat[pairs].mean():+.3f}, against {sim_flat[~torch.eye(g * g, dtype=torch.bool)].mean():+.3f} for all pairs")
print(f"interior {g - 2}x{g - 2} patches only: correlation with distance {inner_structure['distance_correlation']:+.3f} "
      f"(all patches: {structure['distance_correlation']:+.3f}); same row/column {inner_structure['same_row_or_column']:+.3f} "
      f"vs elsewhere {inner_structure['elsewhere']:+.3f}")
print("C3a is judged on all patches, as written before the run; the interior-only number says how much of the "
      f"verdict the border decides ({'it would pass' if inner_structure['distance_correlation'] < -0.3 else 'it fails too'} "
      "without the outer ring).")

# %% [markdown]
# ## 7. Mean attention distance per head (ViT figure 7, right)
#
# For each head: the distance in pixels between a query patch and the patches it attends to,
# weighted by the attention, averaged over queries and images (appendix D.7). It is the attention
# analogue of a CNN's receptive field. A CNN's first layers can only be local; a ViT head can look
# anywhere from layer 1. The paper finds, for models pre-trained on JFT-300M, that some early heads
# look far (global) while others stay local, with the distances growing with depth. Raghu et al.
# (2021) add that the local early heads appear *only with large-scale pre-training*: ViTs trained on
# ImageNet alone have few of them. On 60,000 small images, expect early heads that are more alike,
# closer to uniform. The dashed line is uniform attention.

# %%
distance = analysis.mean_attention_distance(attentions, model).cpu()
uniform = analysis.patch_distances(cfg.grid_size, cfg.patch_size).mean().item()
fig = analysis.plot_attention_distance(distance, cfg.patch_size, cfg.grid_size,
                                       title=f"mean attention distance, {N_ANALYSIS} test images")
plt.show()
for layer, row in enumerate(distance, 1):
    print(f"layer {layer}: " + " ".join(f"{d:5.1f}" for d in row.tolist()) + f"   (uniform {uniform:.1f} px)")
print(f"layers 1-2: heads from {distance[:2].min():.1f} to {distance[:2].max():.1f} px; "
      f"last layer: {distance[-1].min():.1f} to {distance[-1].max():.1f} px")

# %% [markdown]
# The mean distance mixes two things: where a head looks and how spread its weights are (a head that
# looks at one far patch and a head spread evenly can have the same mean). The correlation between
# a head's weight on a patch and that patch's distance, per query, separates them: negative means
# the head prefers near patches whatever their spread, about 0 means distance does not matter.

# %%
corr = analysis.attention_distance_correlation(attentions, model).cpu()
fig, ax = plt.subplots(figsize=(6, 3.2))
shown = ax.imshow(corr.T.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
ax.set(xlabel="layer", ylabel="head", title="correlation of attention weight with distance",
       xticks=range(cfg.depth), xticklabels=range(1, cfg.depth + 1),
       yticks=range(cfg.num_heads), yticklabels=range(1, cfg.num_heads + 1))
fig.colorbar(shown, ax=ax, label="Pearson r (blue: local)")
plt.show()
local_heads = [(l + 1, h + 1) for l in range(cfg.depth) for h in range(cfg.num_heads) if corr[l, h] < -0.2]
print(f"heads with r < -0.2 (clearly preferring near patches): {local_heads or 'none'}; "
      f"layers 1-2 range from r = {corr[:2].min():+.2f} to {corr[:2].max():+.2f}")
# How selective is each head at all? Entropy of its rows relative to uniform attention over all tokens.
selectivity = analysis.attention_entropy(attentions).cpu() / math.log(cfg.num_patches + model.num_prefix_tokens)
print("attention entropy as a share of uniform attention's (1 = uniform), per layer: "
      + "; ".join(f"layer {l + 1}: " + " ".join(f"{v:.2f}" for v in row.tolist()) for l, row in enumerate(selectivity)))
print(f"The least selective head spreads its weight at {selectivity.max():.0%} of the uniform entropy, the most "
      f"selective at {selectivity.min():.0%}: "
      + ("the heads barely select at all, so there is no local/global split to find (SL-ViT's 'smooth attention' "
         "on small data, chapter 06)." if selectivity.min() > 0.9 else
         "some heads do select, so where they do not prefer near patches (the correlations above) they select "
         "by content, not by distance."))
vitcourse.seed_everything(0)
untrained = R.build(train_data).to(DEVICE).eval()            # the same model before training
attentions_init = analysis.attention_maps(untrained, images)
distance_init = analysis.mean_attention_distance(attentions_init, untrained).cpu()
selectivity_init = analysis.attention_entropy(attentions_init).cpu() / math.log(cfg.num_patches + 1)
print(f"the same model untrained: mean attention distance {distance_init.min():.1f} to {distance_init.max():.1f} px, "
      f"entropy share {selectivity_init.min():.2f} to {selectivity_init.max():.2f}; trained: {distance.min():.1f} to "
      f"{distance.max():.1f} px, {selectivity.min():.2f} to {selectivity.max():.2f}")

# %% [markdown]
# ## 8. Another resolution: interpolating the position embedding (ViT section 3.2, FixRes)
#
# Nothing in the encoder depends on the number of tokens; only the position embedding does: it has
# one vector per patch of the *training* grid. To run at another resolution with the same patch size
# (more or fewer patches), the paper performs a "2D interpolation of the pre-trained position
# embeddings" as an image; timm and torchvision (and `vitcourse`) interpolate bicubically, keeping the
# class token's vector. Interpolating to the same grid changes nothing, and a size that is not a
# multiple of the patch size is refused:

# %%
import copy

bigger = copy.deepcopy(model).set_image_size(H + cfg.patch_size)
print(f"position embedding {tuple(model.pos_embed.shape)} -> {tuple(bigger.pos_embed.shape)} at {H + cfg.patch_size} px")
same = copy.deepcopy(model).set_image_size(H)
assert torch.allclose(same.pos_embed, model.pos_embed, atol=1e-6)
try:
    copy.deepcopy(model).set_image_size(H + 1)
except ValueError as err:
    print("set_image_size(H + 1):", err)

# %% [markdown]
# Why would one change the resolution? Two papers, two uses, each measured here.
#
# * **ViT section 3.2**: "it is often beneficial to fine-tune at higher resolution than pre-training"
#   (the paper pre-trains at 224 px and fine-tunes at 384). Pre-training at the lower resolution is
#   also the cheaper part (fewer tokens), and FixRes reports that low-resolution training followed by
#   a short adaptation at the higher resolution matches a model trained at full size for less
#   compute. We train the same ViT at `LOW_SIZE` pixels (the images shrunk), fine-tune it for one
#   epoch at the full size, and compare with section 4's model, trained at full size all along, in
#   accuracy and in compute (forward FLOPs per image times images seen).
# * **FixRes** (Touvron et al. 2019): the usual training crop, *RandomResizedCrop*, cuts a random part
#   of the image (here 35-100% of its area) and resizes it to the training size, so objects look
#   *larger* in training than in the full test image at the same size. Testing at a somewhat higher
#   resolution than training undoes the mismatch. We train at `LOW_SIZE` with RandomResizedCrop and
#   test at `LOW_SIZE` and above; a model trained with translations only (no zoom) is the control.
#
# (Upsampling the test images of a model trained at its native size, without a zooming crop, would
# only blur each patch: that creates the mismatch FixRes removes, and is not what either paper does.)

# %%
from vitcourse.study import run_dir

LOW_SIZE = cfg.patch_size * ((cfg.grid_size + 1) // 2)        # about half the side: a quarter of the tokens
TEST_SIZES = [LOW_SIZE + k * cfg.patch_size for k in range(4) if LOW_SIZE + k * cfg.patch_size <= H]
CROP_SCALE = (0.35, 1.0)                                     # RandomResizedCrop's area range (FixRes uses 0.08-1 on ImageNet)


def train_at(size, loader, tag, epochs=R.epochs, init=None, lr=R.lr, warmup=R.warmup_epochs):
    """R's ViT at `size` px trained on `loader` (checkpointed by config); from `init`'s weights if given."""
    vitcourse.seed_everything(0)
    net = copy.deepcopy(init).set_image_size(size) if init is not None else R.build(train_data, image_size=size)
    config = {"recipe": R.to_dict(), "size": size, "tag": tag, "epochs": epochs, "lr": lr, "data": train_data.name,
              "train_images": len(train_data), "from": init is not None}
    h = fit(net, loader, epochs=epochs, lr=lr, warmup_epochs=warmup, weight_decay=R.weight_decay,
            label_smoothing=R.label_smoothing, device=DEVICE, progress=False,
            checkpoint=run_dir("03_vit_resolution", config) / "checkpoint.pt")
    return net.eval(), sum(e["seconds"] for e in h.epochs)


def test_at(net, size):
    """Test accuracy of `net` with the test images resized to `size` px and its embedding interpolated."""
    net = copy.deepcopy(net).set_image_size(size) if net.config.image_size != size else net
    loader = D.Resized(test_loader, size) if size != H else test_loader
    return evaluate(net, loader)["acc"]


translate_loader = D.Resized(D.DeviceLoader(train_data, R.batch_size, seed=0, device=DEVICE, **R.augment), LOW_SIZE)
zoom_loader = D.DeviceLoader(train_data, R.batch_size, seed=0, device=DEVICE,   # no flip: the control has none
                             crop_scale=CROP_SCALE, crop_size=LOW_SIZE)
low, low_s = train_at(LOW_SIZE, translate_loader, "translate")
zoom, zoom_s = train_at(LOW_SIZE, zoom_loader, "random_resized_crop, no flip")
full_loader = D.DeviceLoader(train_data, R.batch_size, seed=1, device=DEVICE, **R.augment)
tuned, tuned_s = train_at(H, full_loader, "fine-tune", epochs=1, init=low, lr=R.lr / 10, warmup=0.1)
print(f"trained at {LOW_SIZE} px ({(LOW_SIZE // cfg.patch_size) ** 2} patches) in {low_s / 60:.1f} and "
      f"{zoom_s / 60:.1f} min; one fine-tuning epoch at {H} px in {tuned_s / 60:.1f} min")

# %%
flops = {s: analysis.forward_flops(R.build(train_data, image_size=s), (C, s, s)) for s in {LOW_SIZE, H}}
n = len(train_data)
compute = {"native": flops[H] * n * R.epochs, "low + fine-tune": flops[LOW_SIZE] * n * R.epochs + flops[H] * n}
acc_native = test_at(model, H)
acc_low = test_at(low, LOW_SIZE)
acc_tuned = test_at(tuned, H)
print(f"{'model':34s} {'test px':>7s} {'test acc':>8s} {'forward FLOPs x images seen':>28s}")
print(f"{'section 4: trained at ' + str(H) + ' px':34s} {H:7d} {acc_native:8.4f} {compute['native'] / 1e12:24.1f} TFLOP")
print(f"{'trained at ' + str(LOW_SIZE) + ' px':34s} {LOW_SIZE:7d} {acc_low:8.4f} "
      f"{flops[LOW_SIZE] * n * R.epochs / 1e12:24.1f} TFLOP")
print(f"{'trained at ' + str(LOW_SIZE) + ' px + 1 epoch at ' + str(H):34s} {H:7d} {acc_tuned:8.4f} "
      f"{compute['low + fine-tune'] / 1e12:24.1f} TFLOP")
print(f"(FLOPs: floating-point operations, counted by torch; per image forward: {flops[LOW_SIZE] / 1e6:.1f} M at "
      f"{LOW_SIZE} px, {flops[H] / 1e6:.1f} M at {H} px. A training step costs about three forward passes in both, "
      "so the ratios hold for training too.)")
cost_ratio = compute["low + fine-tune"] / compute["native"]
acc_low_at_full = test_at(low, H)
print(f"Low resolution then fine-tuning: {acc_tuned - acc_native:+.2%} against the native model for "
      f"{cost_ratio:.0%} of its compute. The fine-tuning epoch took the low-resolution model, run at {H} px with "
      f"interpolated embeddings, from {acc_low_at_full:.4f} to {acc_tuned:.4f}. At its own {LOW_SIZE} px it had "
      f"{acc_low:.4f}, {acc_low - acc_native:+.2%} from the native model for {flops[LOW_SIZE] / flops[H]:.0%} of its "
      f"compute: what falls short is the brief move to {H} px, not the low-resolution training.")

# %% [markdown]
# Going from `LOW_SIZE` to the full size changes more than the number of patches: a 4x4-pixel patch
# now covers a smaller part of the garment, so the patch embedding sees details at a new scale, and
# the interpolated position embeddings are vectors the model never saw. How long does the model take
# to adapt? A second measurement: the same fine-tuning, run for `FT_EPOCHS` epochs with the test
# accuracy after each (nothing is chosen from it).

# %%
FT_EPOCHS = budget(smoke=2, cpu=3, gpu=5)
longer = copy.deepcopy(low).set_image_size(H)
vitcourse.seed_everything(0)
ft_history = fit(longer, full_loader, test_loader, epochs=FT_EPOCHS, lr=R.lr / 10, warmup_epochs=0.1,
                 weight_decay=R.weight_decay, label_smoothing=R.label_smoothing, device=DEVICE, progress=False,
                 val_name="test", checkpoint=run_dir("03_vit_resolution", {"recipe": R.to_dict(), "from": LOW_SIZE,
                                                                            "fine_tune_epochs": FT_EPOCHS}) / "checkpoint.pt")
print(f"before fine-tuning (interpolated, at {H} px): {acc_low_at_full:.4f}; after each of {FT_EPOCHS} fine-tuning "
      "epochs: " + ", ".join(f"{a:.4f}" for a in ft_history["test_acc"]) + f" (native model {acc_native:.4f})")
ft_compute = (flops[LOW_SIZE] * n * R.epochs + flops[H] * n * FT_EPOCHS) / compute["native"]
print(f"With {FT_EPOCHS} epochs of fine-tuning the low-resolution route costs {ft_compute:.0%} of the native "
      f"training and ends {ft_history['test_acc'][-1] - acc_native:+.2%} from it.")

# %%
fixres = {"RandomResizedCrop": [test_at(zoom, s) for s in TEST_SIZES],
          "translations only": [test_at(low, s) for s in TEST_SIZES]}
fig, ax = plt.subplots(figsize=(6, 3.5))
for (name, accs_s), marker in zip(fixres.items(), "os"):
    ax.plot(TEST_SIZES, accs_s, marker=marker, label=f"trained at {LOW_SIZE} px with {name}")
ax.axvline(LOW_SIZE, color="gray", ls=":", label="training resolution")
ax.set(xlabel="test resolution (px)", ylabel="test accuracy", title="Testing at and above the training resolution")
ax.legend(fontsize=8)
plt.show()
for name, accs_s in fixres.items():
    print(f"{name:20s} " + "  ".join(f"{s} px {a:.4f}" for s, a in zip(TEST_SIZES, accs_s)))
zoom_gain = fixres["RandomResizedCrop"][1] - fixres["RandomResizedCrop"][0] if len(TEST_SIZES) > 1 else 0.0
plain_gain = fixres["translations only"][1] - fixres["translations only"][0] if len(TEST_SIZES) > 1 else 0.0
apparent = sum((a ** 0.5) for a in torch.linspace(*CROP_SCALE, 101).tolist()) / 101
print(f"A crop covers on average {apparent:.2f} of the image's side, so in training an object looks "
      f"{1 / apparent:.2f}x larger than in the whole image at {LOW_SIZE} px: FixRes's argument puts the best test "
      f"size near {LOW_SIZE / apparent:.0f} px; the best measured here is "
      f"{TEST_SIZES[max(range(len(TEST_SIZES)), key=fixres['RandomResizedCrop'].__getitem__)]} px.")
if len(TEST_SIZES) > 1:
    print(f"One patch row more at test ({TEST_SIZES[1]} px): {zoom_gain:+.2%} for the RandomResizedCrop model, "
          f"{plain_gain:+.2%} for the control trained without zoom.")

# %% [markdown]
# A higher test resolution does two things to a ViT: it makes the object larger in pixels (what
# FixRes wants) and it adds patches whose position embeddings are interpolated (what a CNN does not
# have). To separate them, a second measurement keeps the training resolution and the training
# grid, and zooms instead: cut the central part of each test image (a share of its side) and resize
# it to `LOW_SIZE`. The object then looks as large as in training, with no interpolated embedding.


# %%
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
print(f"At {FRACTIONS[2]:.1f} of the side the RandomResizedCrop model loses "
      f"{100 * (zoomed['RandomResizedCrop'][0] - zoomed['RandomResizedCrop'][2]):.1f} percentage points, the control "
      f"{100 * (zoomed['translations only'][0] - zoomed['translations only'][2]):.1f}: zooming crops make a model tolerant of "
      "scale. (FixRes's gains were measured on CNNs with global pooling; a ViT also has to map its patches to new "
      "positions.)")
best = {name: FRACTIONS[max(range(len(FRACTIONS)), key=accs_f.__getitem__)] for name, accs_f in zoomed.items()}
print(f"Best zoom: {best['RandomResizedCrop']:.1f} of the side for the RandomResizedCrop model, "
      f"{best['translations only']:.1f} for the control. "
      + ("Zooming in helps only the model trained with zooming crops: FixRes's train-test size mismatch is real "
         "here, and what the higher test resolution adds on top (interpolated position embeddings) is what hurts."
         if best["RandomResizedCrop"] < 1.0 <= best["translations only"] else
         "The zoom does not single out the RandomResizedCrop model: the mismatch FixRes describes is not what "
         "decides these numbers."))

# %% [markdown]
# ## 9. What the ViT does not know: inductive bias
#
# Chapter 00's CNN builds in assumptions about images (source 004): **locality** (a 3x3 kernel looks at
# neighbours only), the **2-D neighbourhood structure**, and **translation equivariance** (shift the
# input, the feature map shifts). A ViT builds in almost none of them. Only the patch cutting is
# local. Self-attention without positions is *permutation*-equivariant: it treats the patches as a
# set, so moving whole patches around moves its outputs with them, but nothing makes near patches
# matter more than far ones (no locality). And the learned absolute position embedding, which is
# added to each patch, breaks translation equivariance: a shifted object meets other position
# vectors. Everything the ViT knows about where patches are comes from that embedding, which starts
# random and is learned from data (section 6).
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
# ### The ViT against chapter 00's ResNet, on the same data
#
# Learning goal 6 in numbers. Chapter 00 trained a small ResNet on the same training set
# (`recipe("resnet")`); it is loaded from its checkpoint when chapter 00 has run, and trained here
# when not. Both saw random translations in training (the ViT of up to `R.augment`'s padding, the
# ResNet of up to its recipe's; both printed below). We compare their test
# accuracy, size and compute, and then shift the test images by 1 to 4 pixels (the object moves
# right, black fills in): a convolution is equivariant to such shifts by construction and its global
# average pool makes the output nearly invariant; the ViT only knows the shifts it was shown.

# %%
R_CNN = recipe("resnet")
cnn, cnn_history = train_recipe(R_CNN, train_data, test_data, name="00_resnet", progress=False, device=DEVICE)
cnn.eval()


def shifted(data, k):
    """`data` with every image moved k pixels to the right (zeros fill in from the left)."""
    images_k = torch.zeros_like(data.images)
    images_k[..., k:] = data.images[..., :data.images.shape[-1] - k]
    return dataclasses.replace(data, images=images_k)


SHIFTS = [0, 1, 2, 3, 4]
shift_acc = {name: [evaluate(net, D.DeviceLoader(shifted(test_data, k), 500, shuffle=False, device=DEVICE))["acc"]
                    for k in SHIFTS] for name, net in (("ViT", model), (R_CNN.model, cnn))}
cnn_seconds = sum(e["seconds"] for e in cnn_history.epochs)
print(f"{'model':10s} {'parameters':>10s} {'MFLOPs/image':>12s} {'epochs':>6s} {'train min':>9s} {'test acc':>8s}")
for name, net, hist, secs in (("ViT", model, history, train_seconds), (R_CNN.model, cnn, cnn_history, cnn_seconds)):
    print(f"{name:10s} {sum(p.numel() for p in net.parameters()):10,d} "
          f"{analysis.forward_flops(net, (C, H, W)) / 1e6:12.1f} {len(hist.epochs):6d} {secs / 60:9.1f} "
          f"{hist.last['test_acc']:8.4f}")
print("(minutes are this machine's, measured while it did other work: compare them only roughly)")
fig, ax = plt.subplots(figsize=(6, 3.5))
for (name, accs_k), marker in zip(shift_acc.items(), "os"):
    ax.plot(SHIFTS, accs_k, marker=marker, label=name)
ax.axvline(max(R.augment.get("crop_padding", 0), 0.01), color="gray", ls=":", label="largest shift in the ViT's training")
ax.set(xlabel="shift of the test images (pixels)", ylabel="test accuracy", title="Accuracy on shifted test images")
ax.legend()
plt.show()
for name, accs_k in shift_acc.items():
    print(f"{name:10s} " + "  ".join(f"{k} px {a:.4f}" for k, a in zip(SHIFTS, accs_k)))
drop = {name: accs_k[0] - accs_k[-1] for name, accs_k in shift_acc.items()}
print(f"From 0 to {SHIFTS[-1]} px (a shift of {SHIFTS[-1] / cfg.patch_size:g} patch) the ViT loses {100 * drop['ViT']:.1f} "
      f"percentage points of accuracy and the ResNet {100 * drop[R_CNN.model]:.1f}. Training shifts: ViT up to "
      f"{R.augment.get('crop_padding', 0)} px, ResNet up to {R_CNN.augment.get('crop_padding', 0)} px"
      f"{' with flips' if R_CNN.augment.get('flip') else ''}.")

# %% [markdown]
# The price of learning the inductive bias from data is paid once, in pre-training. The ViT paper's
# transfer table (source 003, table 2) shows the other side: with enough data (JFT-300M), ViT-H/14
# reaches 88.55% on ImageNet and 99.50% on CIFAR-10 for **2.5k TPUv3-core-days** of pre-training,
# against BiT-L (a ResNet-152x4) at 87.54% and 99.37% for **9.9k**: about a quarter of the compute for
# a better model (the paper reports the cost; it does not measure why it is lower).
# Chapter 04 measures how much data that takes.

# %% [markdown]
# ## 10. Claims
#
# "Holds" uses thresholds fixed before the run. C3a: the trained position embeddings are more similar
# within a row or column than elsewhere by at least 0.1, and their similarity falls with distance
# (correlation below -0.3), while the untrained ones show neither. C3b: in the first two layers there
# are both a local head and a global head: the smallest mean attention distance is at most half the
# largest. C3c: the mean test accuracy over this profile's seeds reaches its target (the time it took
# is a benchmark's business, `make bench-accuracy`, not a claim's: it measures the machine). Low-res
# pre-training: pre-training at low resolution and fine-tuning one epoch at full size comes within 1 point of the
# full-size model (FixRes reports matching the standard model at a fraction of the cost). FixRes:
# after RandomResizedCrop training, testing one patch row larger is at least 0.2 points better than
# testing at the training size (FixRes, table 1: +1 to +2 points for a ResNet-50).

# %%
early = distance[:2]
local, global_ = early.min().item(), early.max().item()
claims = Claims("03_vision_transformer")
claims.add("C3a", "learned position embeddings show 2-D row/column structure",
           measured=(f"cosine similarity same row/column {structure['same_row_or_column']:.2f} vs elsewhere "
                     f"{structure['elsewhere']:.2f} (row {structure['same_row']:.2f}, column "
                     f"{structure['same_column']:.2f}); correlation with distance "
                     f"{structure['distance_correlation']:.2f}, needs < -0.3 (at init "
                     f"{structure_init['distance_correlation']:.2f}; interior patches only "
                     f"{inner_structure['distance_correlation']:.2f})"),
           holds=(structure["same_row_or_column"] - structure["elsewhere"] >= 0.1
                  and structure["distance_correlation"] < -0.3
                  and abs(structure_init["distance_correlation"]) < 0.3))
claims.add("C3b", "early layers mix local and global heads",
           measured=(f"layers 1-2 mean attention distance per head {local:.1f} to {global_:.1f} px "
                     f"(uniform attention {uniform:.1f} px); weight-distance correlation "
                     f"{corr[:2].min():+.2f} to {corr[:2].max():+.2f}"),
           holds=local <= 0.5 * global_)
if TARGET_ACC is not None:
    claims.add("C3c", f"a ViT trained from scratch on {DATASET} reaches {TARGET_ACC:.0%} test accuracy",
               measured=(f"mean {mean_acc:.2%} over {len(accs)} seeds ({', '.join(f'{a:.2%}' for a in accs.tolist())}) "
                         f"after {R.epochs} epochs ({n_params / 1e3:.0f}k parameters; seed 0: training-batch "
                         f"accuracy {history.last['train_acc']:.2%}, last epoch {last_gain:+.2%}, trained in "
                         f"{train_seconds / 60:.1f} min here)"),
               holds=mean_acc >= TARGET_ACC)
claims.add("low-res pre-training", "pre-training at low resolution, then fine-tuning briefly at full resolution "
           "(ViT 3.2), is cheaper at about the same accuracy (FixRes)",
           measured=(f"{LOW_SIZE} px + 1 epoch at {H} px: {acc_tuned:.2%} for {cost_ratio:.0%} of the compute; "
                     f"trained at {H} px: {acc_native:.2%}"),
           holds=acc_tuned >= acc_native - 0.01 and cost_ratio < 1)
if len(TEST_SIZES) > 1:
    claims.add("FixRes", "after RandomResizedCrop training, a test resolution above the training one is better",
               measured=(f"trained at {LOW_SIZE} px: tested at {LOW_SIZE} px {fixres['RandomResizedCrop'][0]:.2%}, "
                         f"at {TEST_SIZES[1]} px {fixres['RandomResizedCrop'][1]:.2%} ({zoom_gain:+.2%}; "
                         f"control without zoom {plain_gain:+.2%})"),
               holds=zoom_gain >= 0.002)
claims.show()

# %% [markdown]
# ## Exercises
#
# 1. Train with `pool="mean"` (average the patch tokens, no class token read-out). Does accuracy
#    change? Does the attention rollout from the class token still make sense?
# 2. Halve the patch size. How do $N$, the training time per epoch and the accuracy change? Which
#    term of the cost, $O(N D^2)$ or $O(N^2 D)$, grows faster?
# 3. Freeze the position embedding at zero (`model.pos_embed.requires_grad_(False)` after zeroing)
#    and train. How much accuracy does the bag of patches lose on this data set?
# 4. Replace the learned position embedding by the fixed 2-D sinusoidal one of chapter 02 (one half
#    of the channels encodes the row, the other the column). Compare the similarity grid.
# 5. Plot the mean attention distance of an *untrained* ViT. Which part of the local/global pattern
#    of section 7 is learned?
# 6. Load timm's `vit_tiny_patch16_224` with `pretrained=True` (needs a download) through
#    `vitcourse.models.convert.vit_from_timm` and draw its attention rollout on your own photos.
