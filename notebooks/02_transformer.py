# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # 02 · The Transformer: attention is all you need
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/02_transformer.ipynb)
#
# Chapter 01 bolted attention onto an RNN. Vaswani et al. (2017) drop the RNN: every layer is
# **self-attention** (each word attends to all the words of its own sentence) plus a small MLP,
# wrapped in residual connections and LayerNorm. Nothing is sequential within a layer, so a whole
# sentence is processed in parallel, and any word reaches any other in one step.
#
# **Learning goals**
# 1. Attention vs self-attention: $Q = XW^Q$, $K = XW^K$, $V = XW^V$.
# 2. Why $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$ divides by $\sqrt{d_k}$: saturation and gradients, measured.
# 3. Multi-head attention as one projection, a reshape and one batched matmul (einops).
# 4. Padding and causal masks with $-\infty$, and a gradient check that they block information.
# 5. Positions: sinusoidal vs learned.
# 6. The encoder and decoder layers from scratch (feed-forward, add & norm, cross-attention, stacking).
# 7. Residual + LayerNorm: post-LN (original) vs pre-LN (ViT), trained at a high learning rate.
# 8. The encoder-decoder Transformer on the chapter-01 task, against the RNN with attention: cost per
#    layer and path length, speed per sentence, sentences needed, and what its cross-attention reads.
#
# Claim to reproduce (**C2**): *the Transformer reaches the RNN-attention accuracy in less
# wall-clock time; post-LN is less stable than pre-LN at a high learning rate without warm-up.*

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

print(projected("02_transformer"))

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vitcourse import budget
from vitcourse.claims import Claims
from vitcourse.data import FixedSteps, SequenceLoader, make_task
from vitcourse.models import create_model
from vitcourse.models.seq2seq import exact_match_by_bin, exact_match_by_length, length_bins
from vitcourse.nn import (DecoderLayer, EncoderLayer, MultiHeadAttention, causal_mask, dot_product_attention,
                          padding_mask, sinusoidal_table)
from vitcourse.checkpoint import load_checkpoint, read_checkpoint
from vitcourse.study import run_dir
from vitcourse.train import History, cross_entropy, evaluate, fit

DEVICE = vitcourse.device()

# Every run size comes from the profile (smoke: CI seconds; cpu: minutes; gpu: the full run).
MAX_LEN = budget(smoke=12, cpu=40, gpu=50)          # the chapter-01 task
N_TRAIN = budget(smoke=384, cpu=4000, gpu=40000)
N_TEST = budget(smoke=128, cpu=1000, gpu=4000)
HIDDEN = budget(smoke=32, cpu=128, gpu=256)         # RNN width, as in chapter 01
RNN_BATCH = budget(smoke=64, cpu=128, gpu=256)
DIM = budget(smoke=32, cpu=64, gpu=256)             # Transformer width in sections 6-8
TF_DIM = budget(smoke=32, cpu=96, gpu=256)          # section 9: about the RNN's number of parameters
TF_BATCH, TF_WARMUP_STEPS = budget(smoke=64, cpu=64, gpu=128), budget(smoke=5, cpu=300, gpu=2000)
BUDGET_SENTENCES = budget(smoke=768, cpu=80_000, gpu=600_000)   # training sentences each model may see
TARGET_ACC = budget(smoke=0.5, cpu=0.90, gpu=0.95)  # validation token accuracy to reach (C2a)
CHECK_SENTENCES = budget(smoke=128, cpu=1000, gpu=5000)          # validation check every this many sentences
RACE_SEEDS = budget(smoke=(0,), cpu=(0, 1, 2), gpu=(0, 1, 2))
LN_TASK, LN_MAX_LEN = "copy", budget(smoke=8, cpu=12, gpu=24)   # the post-LN vs pre-LN study
LN_LAYERS = budget(smoke=2, cpu=3, gpu=6)           # encoder and decoder depth there
LN_EPOCHS, LN_BATCH = budget(smoke=1, cpu=3, gpu=5), 64
LN_LRS = budget(smoke=[3e-3], cpu=[1e-3, 5e-3, 1e-2], gpu=[1e-3, 3e-3, 1e-2])
LN_SEEDS = budget(smoke=(0,), cpu=(0, 1, 2, 3, 4), gpu=(0, 1, 2, 3, 4))  # stability is judged over seeds
vitcourse.seed_everything(0)

# %% [markdown]
# ## 1. Why context: "it was too tired / too wide"
#
# > *The animal didn't cross the street because **it** was too **tired**.*
# > *The animal didn't cross the street because **it** was too **wide**.*
#
# Same words up to the last one, yet "it" is the animal in the first sentence and the street in
# the second. A good representation of "it" must depend on a word far away, and which word matters
# is decided by the content. An RNN has to carry "animal" and "street" through every step in one
# state vector; self-attention lets "it" look at both directly and weigh them by relevance.
#
# ## 2. Attention vs self-attention
#
# In chapter 01 the query came from the decoder and the keys and values from the encoder, and the
# score of a key was *additive* (Bahdanau): a small network, $e_j = v^\top \tanh(W s + U h_j)$.
# The Transformer scores by a *dot product*, $e_j = q \cdot k_j$, which for all queries at once is
# one matrix product: $C = \mathrm{softmax}(QK^\top)V$. In **self-attention** all three come from the same sequence
# $X$ (one row per word), through three learned projections:
#
# $$Q = XW^Q,\quad K = XW^K,\quad V = XW^V,\qquad C = \mathrm{softmax}\!\left(\frac{QK^\top}{\sqrt{d_k}}\right)V .$$
#
# Row $i$ of $C$ is a new representation of word $i$: a mixture of all the words, weighted by how
# well their keys match its query.

# %%
torch.manual_seed(0)
n, d_model, d_k = 6, 8, 4
X = torch.randn(n, d_model)
# Scaled by 1/sqrt(d_model) as nn.Linear initialises them, so that Q and K have entries of variance
# about 1; unscaled randn weights would give scores of std ~16 (~8 after the 1/sqrt(d_k)): one-hot.
W_Q, W_K, W_V = (torch.randn(d_model, d_k) / math.sqrt(d_model) for _ in range(3))
Q, K, V = X @ W_Q, X @ W_K, X @ W_V
A = torch.softmax(Q @ K.T / math.sqrt(d_k), dim=-1)   # (n, n): row i = where word i looks
C = A @ V
print("attention matrix (rows sum to 1):\n", A.numpy().round(2))

C_pkg, A_pkg = dot_product_attention(Q, K, V)          # scale=None means 1/sqrt(d_k)
assert torch.allclose(C_pkg, C, atol=1e-6) and torch.allclose(A_pkg, A, atol=1e-6)

# %% [markdown]
# ## 3. Why divide by $\sqrt{d_k}$?
#
# If the entries of $q$ and $k$ are independent with mean 0 and variance 1, then
# $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$ has variance $d_k$. Wide heads give large scores, and a
# softmax of large scores is nearly one-hot: it *saturates*, and its gradient
# $\partial \alpha / \partial e = \mathrm{diag}(\alpha) - \alpha\alpha^\top$ vanishes, so the
# attention stops learning. Dividing by $\sqrt{d_k}$ brings the variance back to 1 at every width.
# Measured over 2000 random queries and 32 keys each. For the gradient we report the **median** over
# queries and the share of **dead** queries (gradient norm below $10^{-3}$), not the mean: see below.

# %%
widths = [2, 8, 32, 128, 512, 2048]
stats = {"unscaled": [], "scaled": []}
for d in widths:
    q, k = torch.randn(2000, 1, d), torch.randn(2000, 32, d)
    raw = (q @ k.transpose(-1, -2)).squeeze(1)                     # (2000, 32) scores
    for key, scores in (("unscaled", raw), ("scaled", raw / math.sqrt(d))):
        scores = scores.clone().requires_grad_(True)
        alpha = torch.softmax(scores, dim=-1)
        # gradient of a random linear read-out of the weights with respect to the scores
        (g,) = torch.autograd.grad((alpha * torch.randn_like(alpha)).sum(), scores)
        norms = g.norm(dim=-1)                                         # one gradient norm per query
        stats[key].append(dict(std=scores.detach().std().item(), max_weight=alpha.max(-1).values.mean().item(),
                               grad=norms.median().item(), grad_mean=norms.mean().item(),
                               dead=(norms < 1e-3).float().mean().item()))

fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
for key, marker in (("unscaled", "o"), ("scaled", "s")):
    ax[0].plot(widths, [s["std"] for s in stats[key]], marker=marker, label=key)
    ax[1].plot(widths, [s["max_weight"] for s in stats[key]], marker=marker, label=key)
    line, = ax[2].plot(widths, [s["grad"] for s in stats[key]], marker=marker, label=f"{key}, median")
    ax[2].plot(widths, [s["grad_mean"] for s in stats[key]], ls=":", color=line.get_color(), label=f"{key}, mean")
ax[0].set(xscale="log", yscale="log", xlabel="$d_k$", ylabel="std of the scores", title="Score size")
ax[1].set(xscale="log", xlabel="$d_k$", ylabel="mean largest weight", title="Softmax saturation (1 = one-hot)")
ax[2].set(xscale="log", yscale="log", xlabel="$d_k$", ylabel="gradient norm over queries",
          title="Gradient through the softmax")
for a in ax:
    a.legend(fontsize=8)
fig.tight_layout()
plt.show()
for key in stats:
    print(f"{key:9s}", "  ".join(f"d={d}: max {s['max_weight']:.2f} median grad {s['grad']:.1e} dead {s['dead']:.0%}"
                                  for d, s in zip(widths, stats[key])))
saturation = {key: (stats[key][0], stats[key][-1]) for key in stats}
u_lo, u_hi = saturation["unscaled"]
print(f"Unscaled, from d_k={widths[0]} to {widths[-1]}: the median gradient falls {u_lo['grad'] / u_hi['grad']:.0f}-fold "
      f"and the mean only {u_lo['grad_mean'] / u_hi['grad_mean']:.0f}-fold; {u_hi['dead']:.0%} of the queries are dead "
      f"at d_k={widths[-1]}. Scaled, the largest weight stays at {saturation['scaled'][1]['max_weight']:.2f}.")

# %% [markdown]
# Left: unscaled scores grow like $\sqrt{d_k}$, scaled ones stay at 1. Middle: as they grow the
# softmax puts almost all weight on one key. Right: why the **mean** gradient misleads. In a
# saturated softmax almost every query has a gradient of practically zero, but the rare query whose
# two largest scores nearly tie keeps a gradient of order one, and a few such queries dominate the
# mean, which therefore falls only slowly. The
# median is the typical query, and the dead share says how many queries have stopped learning: the
# printed line gives both for this run.

# %% [markdown]
# ## 4. Multi-head attention: one projection, a reshape, one matmul
#
# $$\mathrm{head}_i = \mathrm{Attention}(XW_i^Q, XW_i^K, XW_i^V),\qquad
# \mathrm{MultiHead}(X) = \mathrm{Concat}(\mathrm{head}_1, \dots, \mathrm{head}_h)\,W^O .$$
#
# The $h$ heads of width $d/h$ need no loop: stack all the $W_i^Q, W_i^K, W_i^V$ into one
# matrix ($W_{qkv}$, stored by `nn.Linear` as $3d \times d$), project once, and *reshape* the result so that the heads become a batch
# dimension. Then one batched matmul computes every head's scores at once.

# %%
def multi_head_from_scratch(x, w_qkv, b_qkv, w_o, b_o, heads, context=None, mask=None):
    """Self-attention (context None): Q, K and V from x. Cross-attention (section 7): Q from x, K and V
    from context, with the same stacked weights. mask: True where a query may attend to a key."""
    if context is None:
        qkv = x @ w_qkv.T + b_qkv                                      # (B, n, 3d): one projection
        q, k, v = rearrange(qkv, "b n (three h d) -> three b h n d", three=3, h=heads)
    else:
        d = x.shape[-1]                                                # rows of w_qkv: q | k | v
        q = rearrange(x @ w_qkv[:d].T + b_qkv[:d], "b n (h d) -> b h n d", h=heads)
        k, v = rearrange(context @ w_qkv[d:].T + b_qkv[d:], "b m (two h d) -> two b h m d", two=2, h=heads)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])          # (B, h, n, m): one matmul
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))              # section 5
    out = torch.softmax(scores, dim=-1) @ v                            # (B, h, n, d/h)
    return rearrange(out, "b h n d -> b n (h d)") @ w_o.T + b_o        # concat heads, then W^O


mha = MultiHeadAttention(dim=32, num_heads=4)
x = torch.randn(2, 7, 32)
ours = multi_head_from_scratch(x, mha.qkv.weight, mha.qkv.bias, mha.proj.weight, mha.proj.bias, heads=4)
fast, _ = mha(x)                                   # F.scaled_dot_product_attention inside
slow, weights = mha(x, need_weights=True)          # explicit path that also returns the weights
assert torch.allclose(ours, fast, atol=1e-5) and torch.allclose(fast, slow, atol=1e-5)
print("weights per head:", tuple(weights.shape), "(batch, heads, queries, keys)")

# %% [markdown]
# ## 5. Masks: $-\infty$ before the softmax
#
# Two things must be hidden from a query: **padding** (not words) and, in a decoder, **the
# future** (when writing word $t$ at test time, words $> t$ do not exist yet; training with the
# whole target at once must not let position $t$ peek at them). A masked score is set to $-\infty$,
# so it gets weight $e^{-\infty} = 0$. The masks are boolean, True where attending is allowed.
#
# A padding mask hides padded **keys** (columns), not padded queries (rows): a padded position still
# computes an output, a mixture of the real words, which is harmless because nothing reads it. The
# loss ignores padded targets and no real query attends to a padded key. Masking whole rows would
# leave a softmax over nothing ($-\infty$ everywhere), which is NaN.

# %%
lengths = torch.tensor([7, 4])
pad = padding_mask(lengths, 7)                          # (B, n): True on real tokens
causal = causal_mask(7)                                 # (n, n): lower triangle
mask = pad[:, None, None, :] & causal                   # broadcast to (B, heads, n, n)
_, w = mha(x, mask=mask, need_weights=True)
fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
ax[0].imshow(causal, cmap="gray")
ax[0].set(title="causal mask (white = allowed)", xlabel="key position", ylabel="query position")
ax[1].imshow((pad[1][None, :] & causal).numpy(), cmap="gray")
ax[1].set(title="causal & padding (length 4)", xlabel="key position", ylabel="query position")
ax[2].imshow(w[1, 0].detach(), cmap="viridis")
ax[2].set(title="weights of head 0, second sentence", xlabel="key position", ylabel="query position")
fig.colorbar(ax[2].images[0], ax=ax[2], label="attention weight")
fig.tight_layout()
plt.show()
assert (w[:, :, causal.logical_not()] == 0).all() and (w[1, :, :, 4:] == 0).all()
print(f"Every weight above the diagonal is 0 ({int((w[:, :, causal.logical_not()] == 0).sum())} of them), and "
      f"the second sentence's queries give its 3 padded keys (positions 4-6, counting from 0 as the axes do) "
      f"weight {w[1, :, :, 4:].abs().max().item():.0f}; its padded query rows 4-6 still hold weights (row 6 sums "
      f"to {w[1, 0, 6].sum().item():.2f}): nothing reads them.")

# %% [markdown]
# A zero weight is not yet proof that no information flows; the gradient is. With a causal mask,
# output $t$ must not depend on any input $s > t$: $\partial y_t / \partial x_s = 0$.

# %%
def gradient_map(module, x, mask):
    """(n, n) matrix of |d y_t / d x_s|: how much output t depends on input s."""
    n = x.shape[1]
    grid = torch.zeros(n, n)
    for t in range(n):
        xg = x.clone().requires_grad_(True)
        y, _ = module(xg, mask=mask)
        (g,) = torch.autograd.grad(y[0, t].sum(), xg)
        grid[t] = g[0].norm(dim=-1)
    return grid


x1 = torch.randn(1, 7, 32)
no_mask, with_mask = gradient_map(mha, x1, None), gradient_map(mha, x1, causal)
fig, ax = plt.subplots(1, 2, figsize=(9, 3.8))
for a, g, title in ((ax[0], no_mask, "no mask"), (ax[1], with_mask, "causal mask")):
    im = a.imshow(g, cmap="magma", vmin=0, vmax=max(no_mask.max(), with_mask.max()))  # one scale: black = 0
    a.set(title=f"|dy_t/dx_s|, {title}", xlabel="input position s", ylabel="output position t")
    fig.colorbar(im, ax=a)
fig.tight_layout()
leak = with_mask.triu(1).abs().max().item()
print(f"largest gradient from a future input: {leak:.1e} (without the mask: {no_mask.triu(1).max():.2f})")
assert leak == 0.0

# %% [markdown]
# ## 6. Positions: sinusoidal vs learned
#
# Self-attention treats its input as a *set*: permute the words and the outputs are permuted the
# same way, nothing else changes. Word order must be added to the input. Vaswani et al. add
# fixed sinusoids of geometrically spaced wavelengths,
#
# $$PE_{(pos, 2i)} = \sin\!\left(pos / 10000^{2i/d}\right),\qquad PE_{(pos, 2i+1)} = \cos\!\left(pos / 10000^{2i/d}\right),$$
#
# so that $PE_{pos+k}$ is a rotation of $PE_{pos}$ (a fixed function of the offset $k$); BERT and
# ViT instead learn one vector per position (`nn.Embedding`-like), which is more flexible but knows
# nothing about positions it was not trained on.

# %%
perm = torch.randperm(7)
y, _ = mha(x1)
y_perm, _ = mha(x1[:, perm])
assert torch.allclose(y[:, perm], y_perm, atol=1e-5)   # permutation in, same permutation out

table = sinusoidal_table(64, DIM)
by_hand = torch.tensor([[math.sin(p / 10000 ** (i / DIM)) if i % 2 == 0 else math.cos(p / 10000 ** ((i - 1) / DIM))
                         for i in range(DIM)] for p in range(64)])
assert torch.allclose(table, by_hand, atol=1e-5)

# %% [markdown]
# The learned table is plotted after training (section 8), next to the sinusoidal one.

# %% [markdown]
# ## 7. The encoder layer and the decoder layer, from scratch
#
# With attention, masks and positions in hand, the Transformer of Vaswani et al. (figure 1) is two
# stacks of layers. Each sub-layer is wrapped in a **residual connection** followed by a
# **LayerNorm** ("add & norm", section 3.1: $\mathrm{LN}(x + \mathrm{Sublayer}(x))$), and the
# **feed-forward** block is the same two-layer MLP applied to every position on its own,
# $\mathrm{FFN}(x) = \max(0, xW_1 + b_1)W_2 + b_2$ (eq. 2).
#
# ```
#       encoder layer (x N)                          decoder layer (x N)
#
#  x ─┬──────────────────────┐            y ─┬────────────────────────────┐
#     │ multi-head            │               │ masked multi-head          │
#     │ self-attention        │               │ self-attention (causal)    │
#     │ (padding mask on keys)│               │                            │
#     └──► add & norm ◄───────┘               └──► add & norm ◄────────────┘
#      ─┬──────────────────────┐               ─┬────────────────────────────┐
#       │ feed-forward (FFN)   │                │ cross-attention: Q from y, │
#       └──► add & norm ◄──────┘                │ K and V from the memory ◄──┼── encoder output
#                │                              └──► add & norm ◄────────────┘
#                ▼                               ─┬────────────────────────────┐
#    memory (the encoder output,                  │ feed-forward (FFN)         │
#    read by every decoder layer)                 └──► add & norm ◄────────────┘
#                                                          ▼
#                                      linear (tied to the embedding) + softmax
# ```
#
# The decoder has one sub-layer more than the encoder: **cross-attention**, where the queries come
# from the target being written and the keys and values from the encoder's output (the *memory*).
# It plays the part of chapter 01's attention, with a dot-product score instead of an additive one.
# Below, each layer in a few lines of plain tensor code, reading the weights of `vitcourse.nn`'s
# layers; the asserts check that both compute the same function, one layer and then whole stacks.

# %%
def add_and_norm(x, sublayer_out, norm):
    """LN(x + Sublayer(x)): the residual connection, then LayerNorm (post-LN, the paper's placement)."""
    return F.layer_norm(x + sublayer_out, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def feed_forward(x, mlp):
    """FFN(x) = max(0, x W1 + b1) W2 + b2 (eq. 2), the same weights at every position."""
    return F.relu(x @ mlp.fc1.weight.T + mlp.fc1.bias) @ mlp.fc2.weight.T + mlp.fc2.bias


def attend(x, attn, context=None, mask=None):
    """Section 4's multi-head attention with the weights of a vitcourse.nn.MultiHeadAttention."""
    return multi_head_from_scratch(x, attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias,
                                   attn.num_heads, context=context, mask=mask)


def encoder_layer(x, layer, mask=None):
    x = add_and_norm(x, attend(x, layer.attn, mask=mask), layer.norm1)
    return add_and_norm(x, feed_forward(x, layer.mlp), layer.norm2)


def decoder_layer(y, memory, layer, self_mask, memory_mask):
    y = add_and_norm(y, attend(y, layer.self_attn, mask=self_mask), layer.norm1)
    y = add_and_norm(y, attend(y, layer.cross_attn, context=memory, mask=memory_mask), layer.norm2)
    return add_and_norm(y, feed_forward(y, layer.mlp), layer.norm3)


torch.manual_seed(0)
enc = EncoderLayer(32, 4, mlp_ratio=2.0, norm_first=False, activation="relu").eval()
dec = DecoderLayer(32, 4, mlp_ratio=2.0, norm_first=False, activation="relu").eval()
src_x, tgt_y = torch.randn(2, 7, 32), torch.randn(2, 5, 32)
key_mask = padding_mask(torch.tensor([7, 4]), 7)[:, None, None, :]    # (B, 1, 1, S): hide padded keys
assert torch.allclose(encoder_layer(src_x, enc, key_mask), enc(src_x, mask=key_mask)[0], atol=1e-5)
memory_x = enc(src_x, mask=key_mask)[0]
assert torch.allclose(decoder_layer(tgt_y, memory_x, dec, causal_mask(5), key_mask),
                      dec(tgt_y, memory_x, self_mask=causal_mask(5), memory_mask=key_mask)[0], atol=1e-5)

# Stacking: embed (scaled by sqrt(d), plus positions), N encoder layers, N decoder layers, then the
# output layer, which shares the embedding's weights (section 3.4).
tiny = create_model("transformer_seq2seq", vocab_size=12, dim=32, num_heads=4, num_encoder_layers=2,
                    num_decoder_layers=2, mlp_ratio=2.0, dropout=0.0, norm_first=False).eval()
src, src_len = torch.tensor([[5, 6, 7, 8, 2], [9, 10, 2, 0, 0]]), torch.tensor([5, 3])
tgt_in = torch.tensor([[1, 8, 7, 6], [1, 10, 9, 2]])
embed = lambda tokens: tiny.pos(tiny.embed(tokens) * math.sqrt(tiny.dim))
mask_src = padding_mask(src_len, src.shape[1])[:, None, None, :]
memory_x = embed(src)
for layer in tiny.encoder:
    memory_x = encoder_layer(memory_x, layer, mask_src)
y = embed(tgt_in)
for layer in tiny.decoder:
    y = decoder_layer(y, memory_x, layer, causal_mask(tgt_in.shape[1]), mask_src)
logits = y @ tiny.embed.weight.T
with torch.no_grad():
    assert torch.allclose(logits, tiny(src, src_len, tgt_in), atol=1e-4)
print("from scratch = vitcourse.nn.Transformer:", tuple(logits.shape), "(batch, target positions, vocabulary)")
print(f"per layer: encoder {sum(p.numel() for p in enc.parameters()):,} parameters "
      f"(attention 4d^2 + 4d, FFN 2 x d x {int(32 * 2.0)} + biases, two LayerNorms), decoder "
      f"{sum(p.numel() for p in dec.parameters()):,} (one attention and one LayerNorm more)")

# %% [markdown]
# ## 8. Residual + LayerNorm: post-LN vs pre-LN
#
# Each sub-layer (attention, MLP) is wrapped as
#
# - **post-LN** (the original Transformer): $x \leftarrow \mathrm{LN}(x + \mathrm{Sublayer}(x))$;
# - **pre-LN** (GPT-2, ViT): $x \leftarrow x + \mathrm{Sublayer}(\mathrm{LN}(x))$.
#
# In pre-LN the residual path from input to output is a clean sum, so gradients reach every layer
# undamped; in post-LN each LayerNorm sits on the residual path. Xiong et al. (2020) show that
# post-LN's gradients near the output are large at initialisation, which is why the original
# recipe needs a learning-rate warm-up; Wang et al. (2019) found pre-LN trains deeper models. We
# train the same Transformer both ways with **no warm-up**, at two learning rates and with several
# seeds, on the copy task with up to `LN_MAX_LEN` words (short, so that it trains in minutes on a
# CPU). *Stability* is not the same as speed, so besides the final loss we record, at every step,
# the gradient norm, and count **loss spikes** (a step whose loss is more than 1.5 times the median
# of the 20 steps before it) and **stalled** runs (a run that ends above 90% of the loss of
# guessing uniformly, $\log V$ for a vocabulary of $V$ tokens, or with a non-finite loss: it failed
# to learn, whether it blew up or sat on the plateau).
# The largest gradient norm is taken after the first 20 steps (the first step's is alike everywhere).

# %%
ln_task = make_task(LN_TASK, num_symbols=20, min_len=3, max_len=LN_MAX_LEN)
# no bucketing here: batches of mixed lengths keep the per-step loss curve comparable step to step
ln_loader = SequenceLoader(ln_task.sample(N_TRAIN, seed=2), LN_BATCH, seed=0, device=DEVICE)
def stability(losses, grad_norms):
    """Final loss (mean of the last 10% of steps), loss spikes, divergence and the largest gradient norm of one run."""
    curve = torch.tensor(losses)
    final = curve[-max(1, len(curve) // 10):].mean().item()
    spikes = sum(int(curve[t] > 1.5 * curve[t - 20:t].median()) for t in range(20, len(curve)))
    stalled = not math.isfinite(final) or final >= 0.9 * math.log(ln_task.vocab_size)
    return dict(final=final, spikes=spikes, stalled=stalled, max_grad=max(grad_norms[20:] or grad_norms))


ln_runs = {}
for lr in LN_LRS:
    for norm in ("post-LN", "pre-LN"):
        for seed in LN_SEEDS:
            torch.manual_seed(seed)
            model = create_model("transformer_seq2seq", vocab_size=ln_task.vocab_size, dim=DIM, num_heads=4,
                                 num_encoder_layers=LN_LAYERS, num_decoder_layers=LN_LAYERS, dropout=0.0,
                                 norm_first=norm == "pre-LN", positional="learned")
            losses, grad_sq = [], []

            def record(outputs, targets, inputs):  # fit's loss hook: the usual loss, kept per step
                loss = cross_entropy(outputs, targets)
                losses.append(loss.detach())       # kept on the device: one transfer after training
                grad_sq.append(torch.zeros((), device=loss.device))  # the backward pass fills it in
                return loss

            def add_grad(g):                       # called for every parameter's gradient
                grad_sq[-1] += g.detach().float().pow(2).sum()

            hooks = [p.register_hook(add_grad) for p in model.parameters()]
            # No warm-up, no gradient clipping: the setting where the placement of LayerNorm matters.
            fit(model, ln_loader, epochs=LN_EPOCHS, lr=lr, weight_decay=0.0, warmup_epochs=0.0,
                grad_clip=None, loss_fn=record, progress=False, device=DEVICE)
            for h in hooks:
                h.remove()
            losses, grad_norms = torch.stack(losses).tolist(), torch.stack(grad_sq).sqrt().tolist()
            ln_runs[(lr, norm, seed)] = dict(model=model, losses=losses, grad_norms=grad_norms,
                                             **stability(losses, grad_norms))
print(f"{'lr':>6s} {'norm':8s} {'seed':>4s} {'final loss':>10s} {'spikes':>6s} {'stalled':>8s} {'max grad norm':>13s}")
for (lr, norm, seed), run in ln_runs.items():
    print(f"{lr:6g} {norm:8s} {seed:4d} {run['final']:10.3f} {run['spikes']:6d} {str(run['stalled']):>8s} "
          f"{run['max_grad']:13.1f}")

fig, axes = plt.subplots(2, len(LN_LRS), figsize=(5.5 * len(LN_LRS), 6.5), squeeze=False)
for col, lr in enumerate(LN_LRS):
    for norm, color in (("post-LN", "tab:blue"), ("pre-LN", "tab:orange")):
        for seed in LN_SEEDS:
            run = ln_runs[(lr, norm, seed)]
            label = norm if seed == LN_SEEDS[0] else None
            style = dict(color=color, lw=1.4 if run["stalled"] else 0.7, ls="--" if run["stalled"] else "-", alpha=0.8)
            axes[0, col].plot(run["losses"], label=label, **style)
            axes[1, col].plot(run["grad_norms"], label=label, **style)
    axes[0, col].set(ylabel="training loss", yscale="log", title=f"lr {lr:g}, no warm-up, {LN_LAYERS}+{LN_LAYERS} layers")
    axes[1, col].set(xlabel="step", ylabel="gradient norm", yscale="log")
    axes[0, col].legend(), axes[1, col].legend()
fig.tight_layout()
plt.show()
for lr in LN_LRS:
    summary = {norm: [ln_runs[(lr, norm, s_)] for s_ in LN_SEEDS] for norm in ("post-LN", "pre-LN")}
    print(f"lr {lr:g}: " + "; ".join(
        f"{norm} mean final {np.mean([r['final'] for r in rs]):.3f}, spikes {sum(r['spikes'] for r in rs)}, "
        f"stalled {sum(r['stalled'] for r in rs)}/{len(rs)}, mean final of the runs that learned "
        f"{np.mean([r['final'] for r in rs if not r['stalled']] or [float('nan')]):.3f}" for norm, rs in summary.items()))

# %% [markdown]
# Top row: the loss of every seed, bottom row: its gradient norm; blue post-LN, orange pre-LN, a
# dashed thick line for a stalled run. The lines printed under the figure count spikes and stalled
# runs per learning rate. Look for two things. At the high learning rates, instability would show as
# loss spikes or a seed that stalls on the plateau of guessing (a loss near log of the vocabulary
# size); the table says which of these this run actually had, and with so few seeds and steps a
# difference of one run is suggestive, not proof. (A large gradient norm alone is not instability:
# the runs that learn fastest have the largest gradients.) At the lowest one the
# order can reverse: post-LN may end *lower* than pre-LN. That is no contradiction. Post-LN's
# LayerNorms rescale every layer's output, which can make its updates effectively larger and its
# early learning faster when the learning rate is small enough to survive it; Liu et al. (2020)
# found that post-LN, when it trains at all, often ends better than pre-LN. What pre-LN buys is
# *reliability* without warm-up ("high" means high for no warm-up at all: section 9's Transformer
# climbs to 5.9e-3 only after 300 warm-up steps). The lines under the figure count, at each learning
# rate, the seeds of each placement that learned, and compare the ones that did.
#
# Two details of the curves. The first steps' loss (about 6 to 7) is above the plateau of guessing
# (log of the vocabulary size, about 3.1): at initialisation the tied output layer gives confident,
# wrong logits, and the first updates undo that. So the "stalled" rule compares a run's end with
# the plateau, not with its first steps (which would let a run that merely reached the plateau pass).
#
# Now the positions these models *learned* (section 6): the cosine similarity between the
# learned vectors of every pair of positions, next to the same map for the sinusoidal table.

# %%
learned = ln_runs[(max(LN_LRS), "pre-LN", LN_SEEDS[0])]["model"].pos.weight.detach().cpu()[: LN_MAX_LEN + 2]
fig, ax = plt.subplots(1, 3, figsize=(15, 4))
im = ax[0].imshow(table.T, aspect="auto", cmap="RdBu")
ax[0].set(title="sinusoidal table", xlabel="position", ylabel="channel")
fig.colorbar(im, ax=ax[0])
for a, tab, title in ((ax[1], table[: LN_MAX_LEN + 2], f"sinusoidal, first {LN_MAX_LEN + 2} positions"),
                      (ax[2], learned, f"learned (pre-LN, lr {max(LN_LRS):g}, seed {LN_SEEDS[0]})")):
    unit = F.normalize(tab, dim=-1)
    im = a.imshow(unit @ unit.T, cmap="viridis", vmin=-1, vmax=1)
    a.set(title=f"cosine similarity, {title}", xlabel="position", ylabel="position")
    fig.colorbar(im, ax=a)
fig.tight_layout()
plt.show()

# %% [markdown]
# The sinusoidal similarity depends only on the distance between positions (a band around the
# diagonal) by construction; the left panel shows 64 positions of the table, the other two only the
# positions the copy task uses. The sinusoidal similarity never gets far below 1 over so few
# positions: the slow channels (the right half of the left panel) hardly change over 14 positions,
# and they are half of the vector. The learned table starts as random vectors, nearly orthogonal
# (cosine near 0: the middle, green-blue, of the colour scale off the diagonal); how far training moved it towards a band is measured by the similarity of
# neighbouring positions, against the same model's table at initialisation:

# %%
torch.manual_seed(LN_SEEDS[0])
initial = create_model("transformer_seq2seq", vocab_size=ln_task.vocab_size, dim=DIM, num_heads=4,
                       num_encoder_layers=LN_LAYERS, num_decoder_layers=LN_LAYERS, dropout=0.0, norm_first=True,
                       positional="learned").pos.weight.detach()[: LN_MAX_LEN + 2]
neighbour = {name: F.cosine_similarity(tab[:-1], tab[1:], dim=-1).mean().item()
             for name, tab in (("sinusoidal", table[: LN_MAX_LEN + 2]), ("learned, initial", initial),
                               ("learned, trained", learned))}
print("mean cosine similarity of neighbouring positions: "
      + ", ".join(f"{name} {v:+.3f}" for name, v in neighbour.items()))
print(f"Training for {LN_EPOCHS} epochs moved the learned neighbours' similarity by "
      f"{neighbour['learned, trained'] - neighbour['learned, initial']:+.3f}, against "
      f"{neighbour['sinusoidal']:+.3f} built into the sinusoids.")

# %% [markdown]
# ## 9. The encoder-decoder Transformer against the RNN with attention
#
# What should a Transformer win, and why? Vaswani et al. (table 1) compare layer types by three
# costs for a sequence of $n$ words of width $d$: the operations per layer, how many of them must run
# one after another (which limits parallel hardware), and the longest path a signal travels between
# two words (long paths are what make long-range dependencies hard to learn, chapter 01).

# %%
n_words, width, k_conv = MAX_LEN + 2, TF_DIM, 3
layer_types = [("self-attention", "n^2 d", n_words**2 * width, "1", 1, "1", 1),
               ("recurrent (RNN)", "n d^2", n_words * width**2, "n", n_words, "n", n_words),
               (f"convolution (k={k_conv})", "k n d^2", k_conv * n_words * width**2, "1", 1, "n/k",
                math.ceil(n_words / k_conv)),
               (f"dilated conv. (k={k_conv})", "k n d^2", k_conv * n_words * width**2, "1", 1, "log_k n",
                math.ceil(math.log(n_words, k_conv)))]
print(f"n = {n_words} words (the longest sentence with <bos>/<eos>), d = {width} for every row "
      f"(the RNN below is {HIDDEN} wide per direction)")
print(f"{'layer type':20s} {'ops per layer':>22s} {'sequential ops':>16s} {'max path length':>17s}")
for name, ops_f, ops, seq_f, seq, path_f, path in layer_types:
    print(f"{name:20s} {ops_f:>8s} = {ops:>11,d} {seq_f:>7s} = {seq:>5d} {path_f:>8s} = {path:>5d}")
print(f"Self-attention is the cheaper layer while n < d ({n_words} vs {width}), and it needs "
      f"{n_words} times fewer sequential steps than the RNN: per sentence it should train faster.")

# %% [markdown]
# How much the sequential steps cost depends on the hardware. A GPU runs thousands of operations at
# once, and an RNN that must take $n$ small steps one after another leaves most of it idle. This
# laptop CPU has 2 cores (2 threads): there is little parallelism to leave idle, so the measured gain
# per sentence is far below the factor of $n$ (printed below); the course's gpu profile shows more.
# And a short path only says how easily a signal *can* travel: whether a briefly trained model uses
# it on long sentences is measured below (exact match against length).

# %% [markdown]
# The chapter-01 task again: reverse 3 to `MAX_LEN` symbols. The RNN is chapter 01's model (additive
# attention, bidirectional GRU encoder); the Transformer is `vitcourse.nn.Transformer` (sinusoidal
# positions, tied embeddings) with about as many parameters. What is ours, not the 2017 paper's: its
# size (2+2 layers, not 6+6), no dropout, and LayerNorms placed as in the ViT (pre-LN, section 8:
# the same layers as section 7 with the norm moved before each sub-layer, and one final LayerNorm
# closing each stack). Each model's *optimisation* follows its own paper, as far as `fit` allows:
#
# * **Transformer** (Vaswani et al., section 5.3): Adam with $\beta_2 = 0.98$, a linear warm-up of
#   `TF_WARMUP_STEPS` steps to the paper's peak rate $d^{-1/2} \cdot \text{warmup}^{-1/2}$, then (our
#   `fit`) a cosine decay instead of the paper's $1/\sqrt{\text{step}}$, label smoothing 0.1;
# * **RNN with attention**: chapter 01's recipe (Adam, $\beta_2 = 0.999$, a short warm-up; Bahdanau
#   et al. used Adadelta, which `fit` does not offer).
#
# Both get the same budget of training sentences and stop when their token accuracy on a
# **validation** set (fresh sentences, not the test set), checked every `CHECK_SENTENCES` sentences,
# first reaches `TARGET_ACC`, a number fixed here before any run. Each is trained from
# `RACE_SEEDS` seeds, and the claim compares the median time: a single run's timing varies by more
# than a few seconds. We record accuracy against sentences seen (how much each model learns per
# sentence) and against training time (what the claim is about), and report the test set at the end.
# The batch sizes differ too (each recipe's own: 128 sentences for the RNN, 64 for the Transformer).
#
# Reversal asks for more than copying: output word $i$ comes from source word $L-1-i$, a position
# counted from the *end* of the sentence. The RNN's backward GRU has that count in its state (it has
# read the sentence from the end), while the Transformer must work it out from absolute positions and
# where `<eos>` sits. The **copy** task, whose alignment $i \to i$ both models get directly, is the
# second measurement.

# %%
class ReachedTarget(Exception):
    """Raised from fit's on_epoch_end when the validation accuracy reaches TARGET_ACC."""


def train_to_target(r, task_r, train_r, val_loader, seed):
    """One model, one seed: train on train_r, checking validation accuracy every CHECK_SENTENCES sentences,
    until TARGET_ACC or BUDGET_SENTENCES. Returns the model and its curve."""
    torch.manual_seed(seed)
    net = create_model(r["name"], vocab_size=task_r.vocab_size, **r["kwargs"])
    steps = max(1, CHECK_SENTENCES // r["batch"])              # one "epoch" of fit = one check
    loader = FixedSteps(SequenceLoader(train_r, r["batch"], bucket=True, seed=seed, device=DEVICE), steps)
    seen_so_far = {}

    def stop_at_target(epoch, history):
        seen_so_far["history"] = history
        if history.last["val_acc"] >= TARGET_ACC:
            raise ReachedTarget

    # Checkpointed (a reset Colab VM loses minutes, not the race); the times come from the history.
    ckpt = run_dir("02_race", {**r, "task": task_r.name, "max_len": MAX_LEN, "n_train": len(train_r), "seed": seed,
                               "check": CHECK_SENTENCES, "budget": BUDGET_SENTENCES, "target": TARGET_ACC}) / "checkpoint.pt"
    saved = read_checkpoint(ckpt)["history"] if ckpt.exists() else []
    if any(e["val_acc"] >= TARGET_ACC for e in saved):  # it reached the target before: load, do not train on
        load_checkpoint(ckpt, model=net, restore_rng=False)
        seen_so_far["history"] = History(saved, val_name="val")
    else:
        try:
            fit(net, loader, val_loader, epochs=max(1, BUDGET_SENTENCES // (steps * r["batch"])), lr=r["lr"],
                betas=r["betas"], weight_decay=0.0, warmup_epochs=r["warmup_steps"] / steps,
                label_smoothing=r["smoothing"], device=DEVICE, on_epoch_end=stop_at_target, progress=False,
                checkpoint=ckpt)
        except ReachedTarget:
            pass
        if "history" not in seen_so_far:  # the run had finished its budget before this re-run
            seen_so_far["history"] = History(read_checkpoint(ckpt)["history"], val_name="val")
    history = seen_so_far["history"]
    seen = [steps * r["batch"] * (k + 1) for k in range(len(history.epochs))]
    seconds = list(np.cumsum([e["seconds"] for e in history.epochs]))   # training time only, no evaluation
    hit = next(((n, t) for n, t, a in zip(seen, seconds, history["val_acc"]) if a >= TARGET_ACC), None)
    return net, dict(seen=seen, seconds=seconds, val_acc=history["val_acc"], hit=hit,
                     per_s=np.mean([e["sentences_per_s"] for e in history.epochs]))


def race(task_name):
    """Both models on one task, RACE_SEEDS seeds each; per model: every seed's curve, and for the first
    seed its model and exact match by length on the test set."""
    task_r = make_task(task_name, num_symbols=20, min_len=3, max_len=MAX_LEN)
    train_r, val_r, test_r = (task_r.sample(n, seed=s) for n, s in ((N_TRAIN, 0), (N_TEST, 3), (N_TEST, 1)))
    val_loader = SequenceLoader(val_r, 250, shuffle=False, device=DEVICE)
    test_loader_r = SequenceLoader(test_r, 250, shuffle=False, device=DEVICE)
    out = {}
    for label, r in recipes.items():
        runs = []
        for seed in RACE_SEEDS:
            net, run = train_to_target(r, task_r, train_r, val_loader, seed)
            run["test"] = evaluate(net, test_loader_r)["acc"]
            if seed == RACE_SEEDS[0]:
                lengths_r, correct_r = exact_match_by_length(net, test_loader_r)
                first = dict(model=net, lengths=lengths_r, correct=correct_r, test_pairs=test_r)
            runs.append(run)
        times = [run["hit"][1] if run["hit"] else math.inf for run in runs]
        out[label] = dict(runs=runs, median_time=float(np.median(times)), per_s=np.mean([run["per_s"] for run in runs]),
                          params=sum(p.numel() for p in first["model"].parameters()), **first)
        print(f"{task_name:8s} {label:16s} {out[label]['params']:8,d} parameters  {out[label]['per_s']:5.0f} sentences/s  "
              f"to {TARGET_ACC:.0%}: " + ", ".join(f"{run['hit'][0]:,} sentences / {run['hit'][1]:.0f} s" if run["hit"]
                                                  else "not reached" for run in runs)
              + f" (seeds {', '.join(map(str, RACE_SEEDS))}); test token accuracy "
              + ", ".join(f"{run['test']:.3f}" for run in runs) + f"; seed {RACE_SEEDS[0]}'s exact match "
              f"{first['correct'].float().mean():.3f}")
    return out


recipes = {
    "RNN + attention": dict(name="seq2seq_attention", kwargs=dict(hidden=HIDDEN), batch=RNN_BATCH, lr=3e-3,
                            betas=(0.9, 0.999), warmup_steps=0.5 * math.ceil(N_TRAIN / RNN_BATCH), smoothing=0.0),
    "Transformer": dict(name="transformer_seq2seq",
                        kwargs=dict(dim=TF_DIM, num_heads=4, num_encoder_layers=2, num_decoder_layers=2,
                                    mlp_ratio=2.0, dropout=0.0),
                        batch=TF_BATCH, lr=TF_DIM ** -0.5 * TF_WARMUP_STEPS ** -0.5, betas=(0.9, 0.98),
                        warmup_steps=TF_WARMUP_STEPS, smoothing=0.1),
}
print(f"Transformer peak learning rate d^-1/2 warmup^-1/2 = {recipes['Transformer']['lr']:.2e}; "
      f"budget {BUDGET_SENTENCES:,} sentences each, target validation token accuracy {TARGET_ACC:.0%}")
races = {name: race(name) for name in ("reverse", "copy")}

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
for row, (task_name, result) in enumerate(races.items()):
    for (label, r), color in zip(result.items(), ("tab:blue", "tab:orange")):
        for k, run in enumerate(r["runs"]):
            kw = dict(color=color, lw=1, alpha=0.8, label=label if k == 0 else None)
            axes[row, 0].plot(run["seen"], run["val_acc"], **kw)
            axes[row, 1].plot(run["seconds"], run["val_acc"], **kw)
    for col, xlabel in enumerate(("training sentences seen", "training time (s), evaluation excluded")):
        axes[row, col].axhline(TARGET_ACC, color="gray", ls=":", label="target")
        axes[row, col].set(xlabel=xlabel, ylabel="validation token accuracy", title=f"{task_name}: accuracy against "
                           + ("sentences seen" if col == 0 else "time") + f", {len(RACE_SEEDS)} seed(s)")
        axes[row, col].legend(fontsize=8)
fig.tight_layout()
plt.show()

for task_name, result in races.items():
    rnn_r, tf_r = result["RNN + attention"], result["Transformer"]
    speed = tf_r["per_s"] / rnn_r["per_s"]
    line = f"{task_name}: the Transformer processes {speed:.1f}x as many training sentences per second as the RNN. "
    sentences = {label: [run["hit"][0] if run["hit"] else math.inf for run in r["runs"]] for label, r in result.items()}
    for label, r in result.items():
        line += (f"{label}: median {np.median(sentences[label]):,.0f} sentences, {r['median_time']:.0f} s to {TARGET_ACC:.0%}. "
                 if math.isfinite(r["median_time"]) else f"{label}: median seed did not reach {TARGET_ACC:.0%}. ")
    if all(math.isfinite(r["median_time"]) for r in result.values()):
        ratio = tf_r["median_time"] / rnn_r["median_time"]
        more = np.median(sentences["Transformer"]) / np.median(sentences["RNN + attention"])
        line += (f"The Transformer needed {more:.1f}x the sentences at {speed:.1f}x the speed: its time to the target "
                 f"is {ratio:.2f} of the RNN's" + (" (within 10%: a tie, given how timings vary)." if abs(ratio - 1) < 0.1 else "."))
    print(line)
need = {task_name: {label: np.median([run["hit"][0] if run["hit"] else math.inf for run in r["runs"]])
                    for label, r in result.items()} for task_name, result in races.items()}
print("Sentences needed to reach the target (median over seeds), reversal against copy: "
      + "; ".join(f"{label} {need['reverse'][label]:,.0f} vs {need['copy'][label]:,.0f}" for label in recipes)
      + ". The model whose need changes between the tasks is the one the reversal's alignment is hard for.")
warm = recipes["Transformer"]["warmup_steps"] * recipes["Transformer"]["batch"]
print(f"(The Transformer's warm-up alone takes {warm:,} sentences at a reduced learning rate.)")

# %% [markdown]
# Exact match (the whole sentence right) against the source length, on the test set of each task:

# %%
bins = length_bins(3, MAX_LEN)                     # source lengths run from 3 to MAX_LEN


def accuracy_by_bin(r):
    return exact_match_by_bin(r["lengths"], r["correct"], bins)


fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for ax, (task_name, result) in zip(axes, races.items()):
    for label, r in result.items():
        ax.plot([f"{lo}-{hi}" for lo, hi in bins], accuracy_by_bin(r), marker="o", label=label)
    ax.set(xlabel="source length (words)", ylabel="exact match", ylim=(-0.03, 1.03),
           title=f"{task_name}: exact match against input length")
    ax.legend()
fig.tight_layout()
plt.show()
for task_name, result in races.items():
    for label, r in result.items():
        print(f"{task_name:8s} {label:16s}", " ".join(f"{lo}-{hi}: {a:.2f}" for (lo, hi), a in zip(bins, accuracy_by_bin(r))))
for task_name, result in races.items():
    long_ = {label: r["correct"][r["lengths"] > MAX_LEN // 2].float().mean().item() for label, r in result.items()}
    short = {label: r["correct"][r["lengths"] <= MAX_LEN // 2].float().mean().item() for label, r in result.items()}
    print(f"{task_name}: exact match on sentences of up to {MAX_LEN // 2} words: "
          + ", ".join(f"{label} {v:.2f}" for label, v in short.items()) + "; longer: "
          + ", ".join(f"{label} {v:.2f}" for label, v in long_.items()))
test_lengths = races["reverse"]["RNN + attention"]["lengths"]            # the same test sentences for every model
counts = [int(((test_lengths >= lo) & (test_lengths <= hi)).sum()) for lo, hi in bins]
print("(These are the first seed's models, stopped as soon as they reached the target token accuracy: one wrong "
      "word spoils a sentence, so exact match falls with length even at 90% of words right. The bins hold "
      f"{min(counts)} to {max(counts)} test sentences, so neighbouring bins differ by chance too.)")

# %% [markdown]
# ### What the trained cross-attention looks at
#
# Chapter 01 drew the RNN's attention as a heatmap. The same for the Transformer's cross-attention on
# the reversal task: for each output word (rows), the weights over the source words (columns), per
# decoder layer, averaged over the heads. The correct source word for output $i$ of a sentence of
# length $L$ is word $L-1-i$: the anti-diagonal.

# %%
tf_rev = races["reverse"]["Transformer"]["model"].eval()
(src, src_len, tgt_in), tgt_out = next(iter(SequenceLoader(races["reverse"]["Transformer"]["test_pairs"], N_TEST,
                                                             shuffle=False, device=DEVICE)))
with torch.no_grad():
    memory, memory_mask, _ = tf_rev.encode(src, src_len)
    _, cross = tf_rev.decode(tgt_in, memory, memory_mask, need_weights=True)   # per layer (B, heads, T, S)
words = src_len - 1                                                            # source words, without <eos>
example = int((words - 12).abs().argmin())                                     # a sentence of about 12 words
L = int(words[example])
fig, axes = plt.subplots(1, len(cross), figsize=(4.6 * len(cross), 4.2), squeeze=False)
for layer, (ax, w) in enumerate(zip(axes[0], cross), 1):
    im = ax.imshow(w[example].mean(0)[: L + 1, : L + 1].cpu(), cmap="magma", vmin=0, vmax=1)
    ax.set(title=f"decoder layer {layer}, mean of heads", xlabel="source position (last: <eos>)",
           ylabel="output position (last: <eos>)")
    fig.colorbar(im, ax=ax, shrink=0.8)
fig.suptitle(f"cross-attention on a test sentence of {L} words (reversal)")
fig.tight_layout()
plt.show()
# Over the whole test set: how often is each layer's largest weight on the correct source word?
positions = torch.arange(tgt_in.shape[1], device=src.device)
real = positions[None, :] < words[:, None]                                     # output words, not <eos>/padding
aligned = (words[:, None] - 1 - positions[None, :])
shares = []
for layer, w in enumerate(cross, 1):
    top = w.mean(1).argmax(-1)                                                 # (B, T)
    share = (top == aligned)[real].float().mean().item()
    shares.append(share)
    off_by_one = ((top - aligned).abs() == 1)[real].float().mean().item()
    print(f"decoder layer {layer}: largest weight on the aligned source word for {share:.1%} of output words "
          f"(on a neighbour of it for {off_by_one:.1%})")
chance = (1 / (words.float() + 1)).mean().item()
print(f"Picking a source position at random would hit the aligned word {chance:.1%} of the time, so the best "
      f"layer's {max(shares):.1%} " + ("means the cross-attention learned the reversal's alignment (the anti-diagonal)."
                                       if max(shares) > 3 * chance else "is not much better than chance."))

# %% [markdown]
# ## 10. Claims

# %%
def race_line(task_name):
    result = races[task_name]
    parts = [f"{label} median {r['median_time']:.0f} s (" + ", ".join(f"{run['hit'][1]:.0f}" if run["hit"] else "not reached"
                                                                   for run in r["runs"]) + ")"
             for label, r in result.items()]
    return f"{task_name}, time to {TARGET_ACC:.0%} validation token accuracy over {len(RACE_SEEDS)} seeds: " + "; ".join(parts)


def transformer_first(task_name):
    rnn_t, tf_t = (races[task_name][label]["median_time"] for label in ("RNN + attention", "Transformer"))
    return math.isfinite(tf_t) and tf_t < rnn_t


top_lr = max(LN_LRS)
at_top = {norm: [ln_runs[(top_lr, norm, s_)] for s_ in LN_SEEDS] for norm in ("post-LN", "pre-LN")}
spikes = {norm: sum(r["spikes"] for r in rs) for norm, rs in at_top.items()}
final = {norm: float(np.mean([r["final"] for r in rs])) for norm, rs in at_top.items()}
stalled = {norm: sum(r["stalled"] for r in rs) for norm, rs in at_top.items()}

(d_lo, s_lo), (d_hi, s_hi) = (widths[0], saturation["unscaled"][0]), (widths[-1], saturation["unscaled"][-1])
claims = Claims("02_transformer")
claims.add("C2a", "the Transformer reaches the RNN-attention accuracy in less wall-clock time",
           measured=f"{race_line('reverse')}. Second measurement, {race_line('copy')}",
           holds=transformer_first("reverse"))
claims.add("C2b", "post-LN is less stable than pre-LN at a high learning rate without warm-up",
           measured=(f"lr {top_lr:g}, {len(LN_SEEDS)} seeds, {LN_LAYERS}+{LN_LAYERS} layers, no warm-up: loss spikes "
                     f"post-LN {spikes['post-LN']} vs pre-LN {spikes['pre-LN']}, stalled {stalled['post-LN']} vs "
                     f"{stalled['pre-LN']}, mean final loss {final['post-LN']:.3f} vs {final['pre-LN']:.3f}"),
           holds=(spikes["post-LN"] + stalled["post-LN"] > spikes["pre-LN"] + stalled["pre-LN"]
                  and final["post-LN"] > final["pre-LN"]))
claims.add("C2c", "without 1/sqrt(d_k) the softmax saturates as d_k grows (and its gradient vanishes)",
           measured=(f"random unit-variance q, k; unscaled: largest weight {s_lo['max_weight']:.2f} -> {s_hi['max_weight']:.2f}, median gradient "
                     f"{s_lo['grad']:.1e} -> {s_hi['grad']:.1e} ({s_hi['dead']:.0%} of queries dead) from d_k={d_lo} "
                     f"to {d_hi}; scaled: largest "
                     f"weight {saturation['scaled'][1]['max_weight']:.2f} at d_k={d_hi}"),
           holds=s_hi["max_weight"] > 0.9 and s_hi["grad"] < 0.1 * s_lo["grad"]
           and saturation["scaled"][1]["max_weight"] < 0.5)
claims.show()
print(f"Second measurement: on the copy task the Transformer {'does' if transformer_first('copy') else 'does not'} reach the "
      f"target first, where on reversal it {'does' if transformer_first('reverse') else 'does not'}.")

# %% [markdown]
# "Holds" uses fixed rules: C2a, on the reversal task the Transformer reaches `TARGET_ACC` validation
# token accuracy in less training time than the RNN (or the RNN never does within the budget), each
# with its own paper's recipe; the copy task is printed beside it as the second measurement. C2b, at
# the highest learning rate and over the seeds, post-LN has more loss spikes plus stalled runs than
# pre-LN, and a higher mean final loss. C2c, unscaled weights become nearly one-hot (largest > 0.9)
# with a median gradient ten times smaller, while the scaled ones stay soft. In the smoke profile
# nothing here is evidence. Read C2a with section 9's lines: speed per sentence and sentences needed
# are separate numbers there, and the time to the target is their ratio.

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
# * `ex.causal_mask.hint()` prints a hint, another on each call;
# * `ex.causal_mask.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch02 as ex

# %% tags=["exercise"]
def causal_mask(n):
    """(n, n) bool mask, True where query i may attend to key j (the decoder's mask)."""
    raise NotImplementedError("write causal_mask, then run this cell")


ex.causal_mask.check(causal_mask)

# %% tags=["exercise"]
def scaled_dot_product(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v over the last two dimensions; `mask` (bool, True = may attend)
    broadcasts to the scores. Returns (out, weights)."""
    raise NotImplementedError("write scaled_dot_product, then run this cell")


ex.scaled_dot_product.check(scaled_dot_product)

# %% tags=["exercise"]
def sinusoidal_encoding(num_positions, dim):
    """(num_positions, dim) table: PE(pos, 2i) = sin(pos / 10000^(2i/dim)),
    PE(pos, 2i+1) = cos(pos / 10000^(2i/dim))."""
    raise NotImplementedError("write sinusoidal_encoding, then run this cell")


ex.sinusoidal_encoding.check(sinusoidal_encoding)

# %% [markdown]
# ## More exercises (experiments to run)
# 1. Train the Transformer with `positional="learned"` on the chapter-01 task, then test it on
#    sentences longer than any it was trained on. Do the same with sinusoids. Which generalises?
# 2. Add warm-up (`warmup_epochs=1`) to the post-LN run at the highest learning rate. Does it
#    catch up with pre-LN?
# 3. Remove the causal mask from the decoder during training and keep greedy decoding. What happens
#    to the training loss, and to the test accuracy? Why?
# 4. Replace `mha` in section 5 by one with 1 head and with 8 heads of the same width: how do the
#    attention maps of a trained model differ (use `need_weights=True`)?
