# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 03 · The Vision Transformer
#
# Dosovitskiy et al. (2021) took the Transformer encoder of chapter 02, changed almost nothing, and
# fed it an image cut into patches: *an image is worth 16x16 words*. This chapter builds that model,
# checks it against torchvision's and timm's, trains one from scratch, and then opens it up.
#
# **Learning goals**
# 1. Turn an image into a token sequence in the paper's five steps, with the tensor shape after each,
#    and compute $N = HW/P^2$ and the size of ViT-B/L/H.
# 2. See that the patch embedding is a strided convolution *and* patchify + one linear layer.
# 3. Know the pieces: class token, learned position embedding, pre-LN encoder, MLP head.
# 4. Train a ViT from scratch, then read it: position-embedding similarity, mean attention distance
#    per head, attention rollout.
# 5. Change the resolution of a trained ViT by interpolating its position embedding (FixRes).
# 6. Say which inductive biases of a CNN (chapter 00) the ViT lacks, and see it in the numbers.
#
# Claim to reproduce (**C3**): *learned position embeddings show 2-D row/column structure; early
# layers mix local and global heads.*

# %%
# Setup: on Colab, install the course package (the preinstalled torch/torchvision are kept).
COURSE_REPO = "https://github.com/vitcourse/vitcourse"
try:
    import vitcourse
except ImportError:
    import subprocess, sys
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{COURSE_REPO}"], check=True)
    import vitcourse
print(vitcourse.environment_report())

# %%

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from einops import rearrange

from vitcourse import analysis, budget
from vitcourse import data as D
from vitcourse.claims import Claims
from vitcourse.models import create_model
from vitcourse.models.vit import LinearPatchEmbedding, PatchEmbedding, ViT, ViTConfig, config_of, patchify
from vitcourse.nn import EncoderLayer
from vitcourse.recipes import recipe, recipe_run_dir
from vitcourse.train import evaluate, fit

DEVICE = vitcourse.device()

# Every run size comes from the profile (smoke: CI seconds; cpu: Fashion-MNIST in minutes;
# gpu: CIFAR-10, the real run). The training recipe of the course ViT lives in vitcourse.recipes,
# where chapters 04-07 and the benchmarks read it too.
DATASET = D.dataset_for_profile()                       # synthetic | fashion_mnist | cifar10
R = recipe("vit")
print(R)
N_TRAIN = budget(smoke=1024, cpu=None, gpu=None)         # None: the whole training set
TARGET_ACC = budget(smoke=None, cpu=0.88, gpu=0.85)      # test accuracy the from-scratch run must reach
TIME_LIMIT_S = budget(smoke=None, cpu=20 * 60, gpu=60 * 60)
N_ANALYSIS = budget(smoke=16, cpu=128, gpu=128)          # test images for the attention statistics
vitcourse.seed_everything(0)

# %% [markdown]
# ## 1. From an image to a sequence: the five input steps
#
# The ViT input (paper section 3.1, eq. 1; seed 000) is built in five steps:
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
# gradients reach the first layers at the same scale as the last. We measure that on a 12-layer stack
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
# The recipe (kept small enough for a laptop CPU in the cpu profile): AdamW, linear warm-up then
# cosine decay, weight decay 0.05 on the weight matrices only (not on the position embedding, class
# token, norms and biases), label smoothing 0.1, gradient clipping at 1. The whole data set sits in
# memory on the device (`DeviceLoader`), and augmentation, when used, is batched there too.

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

# %% [markdown]
# ## 5. Where the model looks: attention maps and attention rollout
#
# Every layer has `heads` attention matrices of size $(N+1)\times(N+1)$. The class token's row of the
# last layer says which patches it reads. One layer is a partial view: information also flows
# through the residual path and earlier layers. **Attention rollout** (Abnar & Zuidema 2020) follows
# it through the whole network: average the heads, add the identity for the residual connection,
# renormalise rows, and multiply the layers,
# $\tilde A_\ell = \bar A_\ell\,\tilde A_{\ell-1}$ with $\bar A_\ell = \mathrm{rownorm}(\mathrm{mean}_h A_\ell + I)$.

# %%
model.eval()
mean, std = test_data.mean, test_data.std
images = next(iter(D.DeviceLoader(D.subset(test_data, N_ANALYSIS, seed=1), N_ANALYSIS, shuffle=False,
                                  device=DEVICE)))[0]
attentions = analysis.attention_maps(model, images)
with torch.no_grad():
    predictions = model(images).argmax(-1).cpu()
cls_maps = analysis.cls_attention(attentions[-1], model).cpu()
fig = analysis.plot_attention_heads(images[0].cpu(), cls_maps[0], mean, std,
                                    title="last layer: class-token attention per head")
rollout = analysis.attention_rollout(attentions)
assert torch.allclose(rollout.sum(-1), torch.ones_like(rollout.sum(-1)), atol=1e-4)
maps = analysis.rollout_map(rollout, model).cpu()
show = 8
fig = analysis.plot_rollout(images[:show].cpu(), maps[:show], mean=mean, std=std,
                            labels=[test_data.classes[p] for p in predictions[:show]])

# %% [markdown]
# ## 6. What the position embedding learned (ViT figure 7, left)
#
# Tile $(r, c)$ shows the cosine similarity between the position embedding of the patch at row $r$,
# column $c$ and those of all patches. Before training they are random vectors (similarity ~0 except
# to itself). After training, the model has discovered the grid: nearby patches have similar
# embeddings, and patches in the same row or column more similar than others.

# %%
sim_init = analysis.position_embedding_similarity(model, init_pos_embed)
sim = analysis.position_embedding_similarity(model)
fig = analysis.plot_position_similarity(sim, title="learned position embeddings: cosine similarity")
structure, structure_init = analysis.position_structure(sim), analysis.position_structure(sim_init)
for name, s in [("initial", structure_init), ("trained", structure)]:
    print(f"{name:8s} same row/column {s['same_row_or_column']:+.3f}  elsewhere {s['elsewhere']:+.3f}  "
          f"correlation with distance {s['distance_correlation']:+.3f}")

# %% [markdown]
# ## 7. Mean attention distance per head (ViT figure 7, right)
#
# For each head: the distance in pixels between a query patch and the patches it attends to,
# weighted by the attention, averaged over queries and images (appendix D.7). It is the attention
# analogue of a CNN's receptive field. A CNN's first layers can only be local; a ViT head can look
# anywhere from layer 1, and the paper finds that some early heads do look far (global) while others
# stay local, with the distances growing with depth. The dashed line is uniform attention.

# %%
distance = analysis.mean_attention_distance(attentions, model).cpu()
uniform = analysis.patch_distances(cfg.grid_size, cfg.patch_size).mean().item()
fig = analysis.plot_attention_distance(distance, cfg.patch_size, cfg.grid_size,
                                       title=f"mean attention distance, {N_ANALYSIS} test images")
for layer, row in enumerate(distance, 1):
    print(f"layer {layer}: " + " ".join(f"{d:5.1f}" for d in row.tolist()) + f"   (uniform {uniform:.1f} px)")

# %% [markdown]
# ## 8. A new resolution: interpolating the position embedding (FixRes)
#
# Nothing in the encoder depends on the number of tokens, only the position embedding does: it has
# one vector per patch of the *training* grid. To run at a higher resolution with the same patch size
# (more patches), the paper (section 3.2) performs a "2D interpolation of the pre-trained position
# embeddings" as an image; timm and torchvision (and `vitcourse`) use bicubic interpolation, keeping
# the class token's vector. Touvron et al. (2019, FixRes) showed that training
# at a low resolution and testing or briefly fine-tuning at a higher one is cheap and accurate.
# We upsample the test images, and compare: the original resolution; the new one with the
# interpolated embedding and no training; and after a short fine-tuning at the new resolution.

# %%
import copy

NEW_SIZE = H + 2 * cfg.patch_size  # two more patches per side
# D.Resized wraps a loader and resizes every batch of images (bicubic) to NEW_SIZE.
hires = copy.deepcopy(model).set_image_size(NEW_SIZE)
print(f"position embedding {tuple(model.pos_embed.shape)} -> {tuple(hires.pos_embed.shape)}")
acc_native = evaluate(model, test_loader)["acc"]
acc_hires = evaluate(hires, D.Resized(test_loader, NEW_SIZE))["acc"]
finetune_data = D.subset(train_data, budget(smoke=256, cpu=5000, gpu=10000), seed=2)
ft_loader = D.Resized(D.DeviceLoader(finetune_data, R.batch_size, drop_last=True, device=DEVICE), NEW_SIZE)
fit(hires, ft_loader, epochs=1, lr=R.lr / 10, warmup_epochs=0.1, label_smoothing=R.label_smoothing,
    device=DEVICE, progress=False)
acc_hires_ft = evaluate(hires, D.Resized(test_loader, NEW_SIZE))["acc"]
print(f"{H}px (trained): {acc_native:.4f} | {NEW_SIZE}px interpolated, no training: {acc_hires:.4f} | "
      f"{NEW_SIZE}px after fine-tuning on {len(finetune_data)} images: {acc_hires_ft:.4f}")
try:
    copy.deepcopy(model).set_image_size(H + 1)
except ValueError as err:
    print("set_image_size(H + 1):", err)

# %% [markdown]
# ## 9. What the ViT does not know: inductive bias
#
# Chapter 00's CNN builds in three assumptions about images (seed 004): **locality** (a 3x3 kernel
# looks at neighbours only), the **2-D neighbourhood structure**, and **translation equivariance**
# (shift the input, the feature map shifts). A ViT builds in almost none of them: only the patch
# cutting is local, and self-attention treats the patches as a *set*. Everything it knows about where
# patches are comes from the position embedding, which starts random and is learned from data
# (section 6). So a ViT needs more data, or more augmentation, to learn what a CNN gets for free
# (the paper: ViT beats ResNets only after pre-training on 14M-300M images; chapter 04 measures it).
#
# A direct way to see it: remove the position embedding and shuffle the patches. The model cannot
# tell the difference: its output is exactly the same (a bag of patches).

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

# %% [markdown]
# ## 10. Claims
#
# "Holds" uses thresholds fixed before the run: the trained position embeddings are more similar
# within a row or column than elsewhere by at least 0.1, and their similarity falls with distance
# (correlation below -0.3) while the untrained ones show neither; in the first two layers there are
# both a local head and a global head: the smallest mean attention distance is at most half the
# largest. The accuracy row states this profile's target and time limit.

# %%
early = distance[:2]
local, global_ = early.min().item(), early.max().item()
claims = Claims("03_vision_transformer")
claims.add("C3a", "learned position embeddings show 2-D row/column structure",
           measured=(f"cosine similarity same row/column {structure['same_row_or_column']:.2f} vs elsewhere "
                     f"{structure['elsewhere']:.2f}; correlation with distance "
                     f"{structure['distance_correlation']:.2f} (at init {structure_init['distance_correlation']:.2f})"),
           holds=(structure["same_row_or_column"] - structure["elsewhere"] >= 0.1
                  and structure["distance_correlation"] < -0.3
                  and abs(structure_init["distance_correlation"]) < 0.3))
claims.add("C3b", "early layers mix local and global heads",
           measured=(f"layers 1-2 mean attention distance per head {local:.1f} to {global_:.1f} px "
                     f"(uniform attention {uniform:.1f} px)"),
           holds=local <= 0.5 * global_)
if TARGET_ACC is not None:
    claims.add("C3c", f"a ViT trained from scratch on {DATASET} reaches {TARGET_ACC:.0%} test accuracy "
               f"in under {TIME_LIMIT_S / 60:.0f} min",
               measured=f"{test_acc:.2%} after {R.epochs} epochs in {train_seconds / 60:.1f} min "
                        f"({n_params / 1e3:.0f}k parameters)",
               holds=test_acc >= TARGET_ACC and train_seconds <= TIME_LIMIT_S)
claims.add("FixRes", "interpolated position embeddings run the model at a higher resolution",
           measured=f"{H}px {acc_native:.2%}; {NEW_SIZE}px no training {acc_hires:.2%}, "
                    f"after 1 short fine-tuning epoch {acc_hires_ft:.2%}",
           holds=acc_hires_ft >= acc_native - 0.02)
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
