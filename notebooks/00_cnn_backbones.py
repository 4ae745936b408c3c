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
# # 00 · CNN backbones: the inductive bias that the Vision Transformer gives up
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/vitcourse/vitcourse/blob/main/notebooks/00_cnn_backbones.ipynb)
#
# **Learning goals**
# 1. Know how the course runs: profiles, data on the device, the trainer, claims tables.
# 2. Compute a convolution over channels by hand; predict output sizes from kernel, stride and padding.
# 3. Follow how pooling and depth grow the receptive field; see what AlexNet brought (ReLU, dropout, a
#    fully connected head) and why VGG stacks 3x3 kernels.
# 4. See vanishing gradients, batch normalisation, and what the ResNet shortcut F(x) + x changes in
#    a deep network: gradients at initialisation and the degradation problem in training.
# 5. Read EfficientNet's compound scaling as a cost table.
# 6. Show numerically the two biases built into every convolution, **locality** and **translation
#    equivariance**. They are the thread of this course: the Vision Transformer drops them and
#    needs more data to make up for it (chapters 03 and 04).
#
# An **inductive bias** is an assumption about the data that is built into a model's architecture,
# so that it holds before any training. A convolution assumes that nearby pixels belong together
# (locality: each output sees only a small window) and that a pattern means the same wherever it
# appears (the same weights at every position, hence translation equivariance). When the
# assumptions are true, the model needs fewer examples to learn; when they are not, they get in the way.
#
# ## How the course works
# Every notebook reads its run sizes through `vitcourse.budget(smoke=..., cpu=..., gpu=...)`. The
# profile comes from `VITCOURSE_PROFILE`: `smoke` (CI: synthetic data, seconds), `cpu` (a laptop:
# Fashion-MNIST, minutes) and `gpu` (Colab: CIFAR-10, the real experiments). Data sets are held as
# one uint8 tensor on the device (`vitcourse.data.DeviceLoader`), so augmentation runs batched on the
# GPU. `vitcourse.train.fit` trains anything with AdamW, warm-up + cosine and the right precision for
# the GPU, checkpointing at every epoch's end and every 5 minutes inside one, so a Colab disconnect
# loses minutes, not runs. Every run, study record and checkpoint goes under `vitcourse.runs_root()`
# (on Colab, your Google Drive after the setup cell). Each chapter ends with a claims table computed
# from the numbers it measured.

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

print(projected("00_cnn_backbones"))

# %%
import inspect

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from einops import rearrange
from tqdm.auto import tqdm

from vitcourse import analysis, budget, profile
from vitcourse.claims import Claims
from vitcourse.data import DeviceLoader, dataset_for_profile, load
from vitcourse.models import create_model
from vitcourse.models.resnet import BasicBlock
from vitcourse.recipes import recipe, train_recipe
from vitcourse.study import Study
from vitcourse.train import predict

vitcourse.seed_everything(0)
claims = Claims("00_cnn_backbones")
print("profile:", profile(), "| data set:", dataset_for_profile())

# %% [markdown]
# ## 1. Convolution over channels
# A convolution layer with `C_in` input and `C_out` output channels holds `C_out` kernels of shape
# `C_in x k x k`. Each output value is a dot product between one kernel and the `C_in x k x k` patch
# under it: channels are summed, space is slid over. Written as *unfold + matrix product*:
# cut every patch into a column (`F.unfold`), then multiply by the flattened kernels.

# %%
def conv2d_from_scratch(x, weight, bias, stride=1, padding=0):
    """y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * x_pad[n, c, i*s + u, j*s + v]."""
    n, c, h, w = x.shape
    c_out, _, k, _ = weight.shape
    h_out = (h + 2 * padding - k) // stride + 1
    w_out = (w + 2 * padding - k) // stride + 1
    patches = F.unfold(x, k, padding=padding, stride=stride)          # (n, c*k*k, h_out*w_out)
    y = rearrange(weight, "o c u v -> o (c u v)") @ patches + bias[:, None]
    return rearrange(y, "n o (i j) -> n o i j", i=h_out, j=w_out)


conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
x = torch.randn(2, 3, 11, 11)
ours = conv2d_from_scratch(x, conv.weight, conv.bias, stride=2, padding=1)
assert torch.allclose(ours, conv(x), atol=1e-5)
print("from scratch == nn.Conv2d:", tuple(ours.shape))

# %% [markdown]
# ## 2. Output size: `H_out = floor((H + 2p - k) / s) + 1`
# The kernel fits `H + 2p - k` positions past the first; a stride `s` keeps every `s`-th of them.
# "Same" padding for an odd kernel at stride 1 is `p = (k - 1) / 2`. We check the formula against
# `nn.Conv2d` for every combination in a grid.

# %%
def conv_output_size(h, k, s=1, p=0):
    return (h + 2 * p - k) // s + 1


checked = 0
for h in (7, 28, 32, 33):
    for k in (1, 3, 5, 7):
        for s in (1, 2, 3):
            for p in (0, 1, 2, 3):
                if h + 2 * p < k:
                    continue
                real = nn.Conv2d(1, 1, k, s, p)(torch.zeros(1, 1, h, h)).shape[-1]
                assert conv_output_size(h, k, s, p) == real, (h, k, s, p)
                checked += 1
print(f"formula matches nn.Conv2d in all {checked} cases; e.g. 32x32, k=3, s=2, p=1 ->", conv_output_size(32, 3, 2, 1))

# %% [markdown]
# ## 3. Pooling
# Pooling summarises each window without weights: max pooling keeps the strongest response (a
# feature *is present* somewhere in the window), average pooling its mean. A 2x2 window with
# stride 2 halves the height and the width, so each pixel of the pooled map stands for 2x2 input
# pixels, and the input area each later kernel sees is **four** times larger.

# %%
x = torch.tensor([[1., 2., 5., 6.],
                  [3., 4., 7., 8.],
                  [0., 1., 2., 0.],
                  [1., 2., 0., 4.]])[None, None]
mx, avg = F.max_pool2d(x, 2), F.avg_pool2d(x, 2)
assert mx.flatten().tolist() == [4., 8., 2., 4.]
assert avg.flatten().tolist() == [2.5, 6.5, 1.0, 1.5]
print("max pool:\n", mx[0, 0], "\naverage pool:\n", avg[0, 0])

# %% [markdown]
# ## 4. Receptive field: how much of the image one output sees
# For a stack of layers with kernel `k_l` and stride `s_l`, the receptive field `r` and the *jump*
# `j` (the distance in input pixels between two neighbouring outputs) grow as
#
# `r_l = r_{l-1} + (k_l - 1) * j_{l-1}`,   `j_l = j_{l-1} * s_l`,   with `r_0 = 1`, `j_0 = 1`.
#
# We measure it instead of trusting it: the receptive field of the centre output is the set of input
# pixels whose gradient is non-zero. With all weights set to 1 no cancellation can hide a pixel.

# %%
def receptive_field(layers):
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r


def measured_receptive_field(net, size=64):
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    return int(rows.max() - rows.min() + 1)


def stack(layers):
    """(k, 1) -> a k x k convolution with all weights 1 (so no gradient can cancel); (2, 2) -> 2x2 average pooling."""
    mods = [nn.AvgPool2d(k, s) if s > 1 else nn.Conv2d(1, 1, k, padding=k // 2, bias=False) for k, s in layers]
    for m in mods:
        if isinstance(m, nn.Conv2d):
            nn.init.ones_(m.weight)
    return nn.Sequential(*mods)


depths = list(range(1, 9))
rf_plain = [receptive_field([(3, 1)] * d) for d in depths]
rf_pooled = [receptive_field([(3, 1), (2, 2)] * d) for d in depths]  # conv 3x3 then 2x2 pooling, repeated
for d in (1, 3, 5):
    assert measured_receptive_field(stack([(3, 1)] * d), 64) == rf_plain[d - 1]
    assert measured_receptive_field(stack([(3, 1), (2, 2)] * d), 256) == rf_pooled[d - 1]

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(depths, rf_plain, marker="o", label="3x3 convs, stride 1 (grows linearly)")
ax.plot(depths, rf_pooled, marker="s", label="3x3 conv + 2x2 pool per block (grows exponentially)")
ax.set(xlabel="number of blocks", ylabel="receptive field (pixels)", yscale="log",
       title="Receptive field against depth (formula, checked by gradients)")
ax.legend()
plt.show()
print(f"After {depths[-1]} blocks one output sees {rf_plain[-1]} pixels across with stride-1 convolutions "
      f"and {rf_pooled[-1]} with a 2x2 pooling in every block: pooling is what lets a CNN see the whole image.")

# %% [markdown]
# ## 5. AlexNet: ReLU, dropout, and a fully connected head
# AlexNet (Krizhevsky et al. 2012) stacked five convolutions and three fully connected layers and won
# ImageNet by a wide margin. Three of its choices are still everywhere.
#
# **ReLU instead of sigmoid.** Backpropagation multiplies the gradient by the activation's slope at
# every layer. The sigmoid's slope is at most 1/4, so through 8 layers the activations multiply a
# gradient by at most $(1/4)^8 \approx 1.5\cdot 10^{-5}$; ReLU's slope is exactly 1 wherever the unit is active.

# %%
z = torch.linspace(-6, 6, 241, requires_grad=True)
slopes = {}
for name, act in (("sigmoid", torch.sigmoid), ("ReLU", torch.relu)):
    (g,) = torch.autograd.grad(act(z).sum(), z)
    slopes[name] = g
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, g in slopes.items():
    ax.plot(z.detach(), g, label=f"{name}' (largest {g.max():.2f})")
ax.set(xlabel="pre-activation z", ylabel="slope d act / dz", title="Activation slopes: what backpropagation multiplies by")
ax.legend()
plt.show()
print(f"largest gradient factor through 8 layers: sigmoid {slopes['sigmoid'].max().item() ** 8:.1e}, "
      f"ReLU {slopes['ReLU'].max().item() ** 8:.0f} (for the units that are active)")

# %% [markdown]
# The sigmoid's slope peaks at 0.25 and is nearly 0 for large |z|; ReLU's is 0 or 1. Section 7
# measures the consequence in a 20-layer stack.
#
# **Dropout** (Srivastava et al. 2014; AlexNet's fully connected layers) zeroes each unit with
# probability $p$ during training and scales the survivors by $1/(1-p)$, so the expected output is
# unchanged; at evaluation it does nothing. This is why a model has a training mode and an
# evaluation mode (`model.train()`, `model.eval()`):

# %%
drop = nn.Dropout(p=0.5)
x = torch.ones(10_000)
train_out, eval_out = drop.train()(x), drop.eval()(x)
zeroed = (train_out == 0).float().mean().item()
assert torch.equal(eval_out, x) and set(train_out.unique().tolist()) <= {0.0, 2.0}
print(f"train mode: {zeroed:.1%} of the units zeroed, the others x2, mean {train_out.mean():.3f}; "
      f"eval mode: unchanged, mean {eval_out.mean():.3f}")

# %% [markdown]
# **Flatten, then fully connected layers.** AlexNet's last feature map (256 channels of 6x6) is
# flattened into one vector of 9,216 numbers and passed through layers of 4,096, 4,096 and 1,000
# units. Counted on torchvision's AlexNet (random weights, nothing downloaded):

# %%
alexnet = torchvision.models.alexnet(weights=None)
n_total = sum(p.numel() for p in alexnet.parameters())
n_head = sum(p.numel() for p in alexnet.classifier.parameters())
print(alexnet.classifier)
print(f"AlexNet: {n_total:,} parameters, {n_head:,} ({n_head / n_total:.0%}) of them in the fully connected head")
assert n_head == (256 * 6 * 6 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)

# %% [markdown]
# Most of AlexNet's parameters sit in the head, and the flatten ties them to one input size and to
# absolute positions. The ResNets below replace the head by a global average over positions and
# one linear layer, which works at any resolution.
#
# ## 6. VGG: two 3x3 convolutions see as much as one 5x5, with fewer weights
# With `C` channels in and out, one 5x5 layer has `25 C^2` weights; two 3x3 layers have `2 * 9 C^2 =
# 18 C^2`, the same 5x5 receptive field, and one more non-linearity. Counted from real modules:

# %%
C = 64
one_5x5 = nn.Conv2d(C, C, 5, padding=2, bias=False)
two_3x3 = nn.Sequential(nn.Conv2d(C, C, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(C, C, 3, padding=1, bias=False))
n5, n33 = (sum(p.numel() for p in m.parameters()) for m in (one_5x5, two_3x3))
assert (n5, n33) == (25 * C * C, 18 * C * C)
rf5 = measured_receptive_field(stack([(5, 1)]))
rf33 = measured_receptive_field(stack([(3, 1), (3, 1)]))
assert rf5 == rf33 == 5
print(f"one 5x5: {n5:,} weights, receptive field {rf5} | two 3x3: {n33:,} weights, receptive field {rf33} "
      f"| ratio {n33 / n5:.2f} = 18/25")
claims.add("C0-VGG", "two 3x3 convs = one 5x5's receptive field with 18C^2 vs 25C^2 weights",
           f"RF {rf33} vs {rf5}; {n33:,} vs {n5:,} weights (C={C})", holds=rf33 == rf5 and n33 / n5 == 18 / 25)

# %% [markdown]
# ## 7. ResNet: vanishing gradients, batch norm, and F(x) + x
#
# **Vanishing gradients.** Backpropagation multiplies the gradient by one layer Jacobian per layer. If
# those factors are a little below 1 in size, the product shrinks exponentially with depth, and the
# first layers barely learn. The sigmoid makes it worse: its slope is at most 1/4. We stack 20
# convolutions (16 channels, PyTorch's default initialisation, no normalisation), run one batch of the
# profile's data through them at initialisation, and measure the gradient norm of every convolution:

# %%
data_name = dataset_for_profile()
train_full, test = load(data_name, "train"), load(data_name, "test")
c, h, _ = train_full.shape
probe = next(iter(DeviceLoader(train_full, 128, seed=0)))


def plain_conv_stack(depth, act, channels=16):
    """depth 3x3 convolutions with `act` after each, then global average pooling and a linear head."""
    layers, ch = [], c
    for _ in range(depth):
        layers += [nn.Conv2d(ch, channels, 3, padding=1), act()]
        ch = channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, len(train_full.classes)))


def conv_grad_norms(net):
    """Gradient norm of each convolution's weight after one cross-entropy backward pass on `probe`."""
    net = net.to(probe[0].device)
    F.cross_entropy(net(probe[0]), probe[1]).backward()
    return [p.grad.norm().item() for n, p in net.named_parameters() if p.ndim == 4 and "shortcut" not in n]


torch.manual_seed(0)
no_norm = {name: conv_grad_norms(plain_conv_stack(20, act)) for name, act in (("sigmoid", nn.Sigmoid), ("ReLU", nn.ReLU))}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, g in no_norm.items():
    ax.plot(range(1, len(g) + 1), g, marker="o", ms=3, label=f"{name}, no normalisation")
ax.set(yscale="log", xlabel="convolution layer (1 = next to the input)", ylabel="gradient norm",
       title="Gradients at initialisation, 20 plain layers")
ax.legend()
plt.show()
for name, g in no_norm.items():
    print(f"{name:8s} last layer {g[-1]:.1e}, first layer {g[0]:.1e}: the first gets {g[0] / g[-1]:.1e} times the last's")

# %% [markdown]
# Read the printed ratios: a ratio far below 1 is a gradient that *vanishes* on its way to the input.
# ReLU vanishes here too although its slope is 1: PyTorch's default initialisation gives each
# convolution's weights a variance of about $1/(3\,\text{fan-in})$, so every layer shrinks the signal;
# He initialisation ($2/\text{fan-in}$, `nn.init.kaiming_normal_`, what `vitcourse`'s ResNet uses)
# is chosen to keep it constant through ReLUs.
#
# **Batch normalisation** (Ioffe & Szegedy 2015) rescales each channel over the batch and the
# positions to mean 0 and variance 1, then lets the network choose its own scale and shift:
# $\hat x = (x - \mu_B)/\sqrt{\sigma_B^2 + \epsilon}$, $y = \gamma \hat x + \beta$. In two lines,
# against `nn.BatchNorm2d` in training mode:

# %%
x = torch.randn(8, 4, 5, 5) * 3 + 1
bn = nn.BatchNorm2d(4).train()
mu, var = x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
y = bn.weight[None, :, None, None] * (x - mu) / torch.sqrt(var + bn.eps) + bn.bias[None, :, None, None]
assert torch.allclose(y, bn(x), atol=1e-5)
print("batch norm by hand = nn.BatchNorm2d; per-channel mean and std after it:",
      y.mean(dim=(0, 2, 3)).abs().max().item() < 1e-5, y.std(dim=(0, 2, 3), unbiased=False).round(decimals=3).tolist())

# %% [markdown]
# Every activation then has a fixed scale whatever the depth, so the forward signal neither dies nor
# blows up. **The residual block** (He et al. 2016) adds a shortcut around two such layers,
# `y = ReLU(F(x) + x)` with `F = conv-BN-ReLU-conv-BN`. This is `vitcourse.models.resnet.BasicBlock`:

# %%
print(inspect.getsource(BasicBlock.forward))
block = BasicBlock(16, 16).eval()
x = torch.randn(2, 16, 8, 8)
with torch.no_grad():
    assert torch.allclose(block(x), torch.relu(block.f(x) + x))        # F(x) + x, then ReLU
    plain_block = BasicBlock(16, 16, residual=False).eval()
    assert torch.allclose(plain_block(x), torch.relu(plain_block.f(x)))  # the "plain" net: no shortcut

# %% [markdown]
# Backpropagation through it multiplies the gradient by $I + \partial F/\partial x$ instead of
# $\partial F/\partial x$ alone: the identity carries the gradient past every block. We build the
# 56-layer networks of He et al. with and without shortcuts (`resnet56`, `plain56`, identical
# otherwise, batch norm included) and measure the same gradient norms at initialisation:

# %%
def grad_norms(name):
    torch.manual_seed(0)
    return conv_grad_norms(create_model(name, num_classes=len(train_full.classes), in_channels=c))


norms = {name: grad_norms(name) for name in ("plain56", "resnet56")}
spread = {name: max(g) / min(g) for name, g in norms.items()}
fig, ax = plt.subplots(figsize=(7, 3.5))
for name, g in norms.items():
    ax.plot(range(1, len(g) + 1), g, label=f"{name} (max/min = {spread[name]:.0f})")
ax.set(yscale="log", xlabel="convolution layer (1 = next to the input)", ylabel="gradient norm",
       title="Gradient norm per layer at initialisation, 56 layers with batch norm")
ax.legend()
plt.show()
for name, g in norms.items():
    direction = "grows" if g[0] > g[-1] else "shrinks"
    print(f"{name:9s} first layer {g[0]:.2g}, last layer {g[-1]:.2g}: the gradient {direction} "
          f"{max(g[0], g[-1]) / min(g[0], g[-1]):.0f}-fold towards the input; max/min over layers {spread[name]:.0f}")

# %% [markdown]
# The jumps near layers 20 and 38 are the stage boundaries, where the resolution halves and the
# width doubles. With batch norm the plain net's gradient does not vanish; read the direction from the printed
# lines: in a deep plain stack with batch norm it typically *explodes* towards the input (each
# normalisation divides by a standard deviation, and the backward pass multiplies by its inverse; Yang
# et al. 2019). The shortcuts narrow the spread but do not make it flat. What breaks a deep plain net
# is not one number at initialisation but **training**: He et al.'s *degradation problem*. A 56-layer
# plain net has a *higher training error* than a 20-layer one (their figure 1), although it could
# copy the 20 layers and set the rest to the identity. With shortcuts the identity is the default,
# and the deeper net trains at least as well. We train all four nets for the same few steps and
# compare their training loss:

# %%
DEGRADATION_STEPS = budget(smoke=4, cpu=150, gpu=600)
DEGRADATION_BATCH = 32


def train_losses(name):
    """Training loss of every step of `name`, trained from scratch with Adam (lr 1e-3) on the profile's data."""
    torch.manual_seed(0)
    net = create_model(name, num_classes=len(train_full.classes), in_channels=c).to(probe[0].device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    # vitcourse.rehearsal: all DEGRADATION_STEPS; when `make rehearsal` tries the gpu profile on a CPU, only
    # a few, the first measured for the plan of the chapter's cost (fit does the same for its own steps)
    for step, (x, y) in enumerate(DeviceLoader(train_full, DEGRADATION_BATCH, seed=0, drop_last=True)):
        if step == vitcourse.rehearsal.steps(DEGRADATION_STEPS):
            break
        with vitcourse.rehearsal.loop_step(net, opt, step, DEGRADATION_STEPS, DEGRADATION_BATCH):  # see below
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.detach())                 # kept on the device: no sync per step
    return torch.stack(losses).tolist()


study = Study("00_degradation")
config = {"data": data_name, "steps": DEGRADATION_STEPS, "batch": DEGRADATION_BATCH, "optimizer": "adam 1e-3"}
curves = {name: study.run({**config, "model": name},
                          lambda cfg: {"metrics": {"losses": train_losses(cfg["model"])}})["metrics"]["losses"]
          for name in tqdm(("plain20", "plain56", "resnet20", "resnet56"), desc="degradation")}
tail = max(1, DEGRADATION_STEPS // 4)                             # the last quarter of the steps
final = {name: sum(v[-tail:]) / tail for name, v in curves.items()}
fig, ax = plt.subplots(figsize=(7, 3.8))
for name, v in curves.items():
    smooth = torch.tensor(v).unfold(0, min(10, len(v)), 1).mean(1) if len(v) >= 2 else torch.tensor(v)
    ax.plot(smooth, label=f"{name} (last quarter {final[name]:.2f})", ls="-" if "res" in name else "--")
ax.set(xlabel="step", ylabel="training loss (running mean of 10)", title="The degradation problem: depth without shortcuts")
ax.legend()
plt.show()
print(f"20 -> 56 layers, training loss over the last quarter: plain {final['plain20']:.3f} -> {final['plain56']:.3f}, "
      f"residual {final['resnet20']:.3f} -> {final['resnet56']:.3f}")
claims.add("C0-ResNet", "without shortcuts the deeper net trains worse (degradation); with them it does not",
           f"training loss after {DEGRADATION_STEPS} steps, 20 -> 56 layers: plain {final['plain20']:.3f} -> "
           f"{final['plain56']:.3f}, residual {final['resnet20']:.3f} -> {final['resnet56']:.3f}",
           holds=(final["plain56"] > 1.1 * final["plain20"]
                  and final["resnet56"] - final["resnet20"] < 0.5 * (final["plain56"] - final["plain20"])))

# %% [markdown]
# Dashed lines are the plain nets, solid ones the residual nets. The claim's rule, fixed before the
# run from He et al.'s figures 1 and 6: adding 36 layers raises the plain net's training loss by more
# than 10%, and raises the residual net's by less than half as much (or lowers it). Note the scale:
# DEGRADATION_STEPS steps of 32 images are a small part of one epoch and one seed, so this shows
# the deep plain net *learning more slowly from the start*; He et al.'s degradation is the higher
# training error that remains after full training.
#
# ## 8. EfficientNet: scale depth, width and resolution together
# The cost of a conv net grows as `depth x width^2 x resolution^2` (width enters twice: input and
# output channels; resolution twice: height and width). EfficientNet (Tan & Le, 2019) scales all three
# with one coefficient phi: depth `1.2^phi`, width `1.1^phi`, resolution `1.15^phi`, chosen so that
# `1.2 x 1.1^2 x 1.15^2 ~ 2`: each step of phi doubles the FLOPs. We count real FLOPs of our ResNet,
# scaled each way, with `torch.utils.flop_counter`, and compare with the formula. (`FlopCounterMode`
# counts a multiply-add as 2 FLOPs; papers, EfficientNet's "FLOPS" and ResNet's included, count
# multiply-adds, so divide by 2 to compare with their tables.)

# %%
def gflops(model, size, channels=3):
    # analysis.forward_flops runs one image through the model under torch.utils.flop_counter.FlopCounterMode
    return analysis.forward_flops(model, (channels, size, size)) / 1e9


base = gflops(create_model("resnet20"), 32)
measured = {
    "depth x3 (resnet56: 27 blocks vs 9)": (gflops(create_model("resnet56"), 32) / base, 3.0),
    "width x2 (resnet20_w2)": (gflops(create_model("resnet20_w2"), 32) / base, 4.0),
    "resolution x2 (64 px)": (gflops(create_model("resnet20"), 64) / base, 4.0),
}
print(f"resnet20 at 32 px: {base:.3f} GFLOPs per image = {base / 2:.3f} G multiply-adds (the papers' unit)")
print("| scaling | measured FLOPs ratio | formula |\n|---|---|---|")
for name, (ratio, formula) in measured.items():
    print(f"| {name} | {ratio:.2f} | {formula:.2f} |")
    assert abs(ratio / formula - 1) < 0.1, name  # the stem and head are why it is not exact
print("\nEfficientNet compound scaling (alpha=1.2, beta=1.1, gamma=1.15):")
print("| phi | depth | width | resolution (from 224) | FLOPs factor |\n|---|---|---|---|---|")
for phi in range(5):
    d, w, r = 1.2 ** phi, 1.1 ** phi, 1.15 ** phi
    print(f"| {phi} | {d:.2f} | {w:.2f} | {round(224 * r)} | {d * w * w * r * r:.2f} |")

# %% [markdown]
# The measured ratios follow `depth x width^2 x resolution^2` to within the stem and head. Why
# scale all three together rather than one? Each direction alone saturates (EfficientNet, figure 3):
# a deeper net learns higher-level features but gets harder to train, a wider one finer features but
# not higher-level ones, and a higher resolution shows finer detail that a shallow, narrow net cannot
# use. A larger image needs more layers to cover it with receptive fields and more channels to hold
# its detail, so the three help each other: at about the same FLOPs, the balanced scaling was 0.7
# (ResNet-50) to 1.4 (MobileNetV1) points more accurate on ImageNet than scaling one direction
# (their table 3), and up to 2.5 points when scaling EfficientNet-B0 (their figure 8).

# %% [markdown]
# ## 9. Locality and translation equivariance, numerically
# *Locality*: an output pixel of a k x k convolution depends only on the k x k pixels under it. We
# measure it the way section 4 did, through the gradient: which input pixels change one output
# pixel, for a 3x3 convolution and for a fully connected layer over the same 16x16 image. *Translation equivariance*: shifting the input
# shifts the output, `conv(shift(x)) = shift(conv(x))`. With circular padding this is exact; with zero
# padding it holds away from the borders. A fully connected layer over the same pixels has neither.

# %%
torch.manual_seed(0)
x = torch.randn(1, 1, 16, 16)
conv_c = nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular")
dense = nn.Linear(16 * 16, 4 * 16 * 16)
as_map = lambda t: dense(t.flatten(1)).view(1, 4, 16, 16)  # noqa: E731


def gradient_support(f):
    """How many input pixels the output pixel (channel 0, row 8, column 8) depends on (non-zero gradient)."""
    xg = x.clone().requires_grad_(True)
    f(xg)[0, 0, 8, 8].backward()
    return int((xg.grad != 0).sum())


support = {"3x3 convolution": gradient_support(conv_c), "fully connected": gradient_support(as_map)}
assert support == {"3x3 convolution": 9, "fully connected": 256}
print("input pixels one output pixel depends on: " + ", ".join(f"{k} {v}" for k, v in support.items()))

shift = lambda t: torch.roll(t, shifts=(3, 5), dims=(2, 3))  # noqa: E731
err_conv = (conv_c(shift(x)) - shift(conv_c(x))).abs().max().item()
err_dense = (as_map(shift(x)) - shift(as_map(x))).abs().max().item()
assert err_conv < 1e-5 and err_dense > 0.1
print(f"max |f(shift x) - shift f(x)|: convolution {err_conv:.1e}, fully connected {err_dense:.2f}")
claims.add("C0-bias", "convolution (circular padding) is translation-equivariant, a dense layer is not",
           f"equivariance error conv {err_conv:.1e} vs dense {err_dense:.2f}", holds=err_conv < 1e-5 < err_dense)

# %% [markdown]
# Where does a ViT layer stand? Self-attention without position information is
# *permutation*-equivariant: shuffle the patches and the outputs shuffle the same way, so it is also
# equivariant to cyclic shifts by whole patches. What it lacks is **locality**: every patch looks at every
# other from the first layer, and nothing tells it which patches are neighbours. The *learned
# absolute* position embedding that supplies position then breaks translation equivariance: a
# shifted patch gets another position vector. Keep this in mind for chapter 03.
#
# ## 10. Train the course ResNet
# `vitcourse.models.resnet` is the CIFAR-style ResNet of He et al. (3 stages, 16/32/64 channels; the
# profile picks the depth: resnet8, 6*1+2 layers, in the cpu profile, resnet20 in the gpu one). It
# is the CNN baseline of chapter 04 and the DeiT teacher of chapter 05. We train it on the profile's
# data with random crops and flips, batched on the device, with the profile's recipe from
# `vitcourse.recipes` (the same settings the benchmarks time).

# %%
R = recipe("resnet")  # vitcourse.recipes: the one place chapters and benchmarks read the course ResNet's settings
model_name, epochs = R.model, R.epochs
train = train_full
print(R)
# train_recipe builds R's model and a DeviceLoader with R's batch size and augmentation, then calls
# fit() with R's optimiser settings, checkpointing under a folder named from R and the data: change a
# knob and a new run starts; re-run unchanged and the finished run is loaded (chapter 05 loads this
# very model as its teacher).
model, history = train_recipe(R, train, test, name="00_resnet")
test_loader = DeviceLoader(test, 1000, shuffle=False)
print(f"{model_name}: {sum(p.numel() for p in model.parameters()):,} parameters; {len(train):,} training images")
history.plot(f"{model_name} on {data_name}")
plt.show()

# %% [markdown]
# The confusion matrix shows which classes are mixed up (row: the true class, column: the
# prediction); the line under it names the pairs confused most often in this run.

# %%
pred, target = predict(model, test_loader)
k = len(test.classes)
confusion = torch.bincount(target * k + pred, minlength=k * k).view(k, k)
test_acc = (pred == target).float().mean().item()
assert confusion.sum() == len(target) and abs(confusion.diag().sum().item() / len(target) - history.last["test_acc"]) < 1e-6
fig, ax = plt.subplots(figsize=(6, 5))
im = ax.imshow(confusion / confusion.sum(1, keepdim=True), cmap="Blues", vmin=0, vmax=1)
ax.set_xticks(range(k), test.classes, rotation=60, ha="right")
ax.set_yticks(range(k), test.classes)
ax.set(xlabel="predicted class", ylabel="true class", title=f"{model_name} confusion matrix (test accuracy {test_acc:.1%})")
fig.colorbar(im, ax=ax, label="fraction of the true class")
plt.show()
off = confusion.clone().fill_diagonal_(0)
pairs = sorted(((off[i, j] + off[j, i]).item(), i, j) for i in range(k) for j in range(i + 1, k))[::-1][:3]
print("most confused pairs (both directions, test images): "
      + "; ".join(f"{test.classes[i]} / {test.classes[j]}: {n}" for n, i, j in pairs)
      + f"; the best-recognised class is {test.classes[int(confusion.diag().argmax())]}.")

target_acc = budget(smoke=0.0, cpu=0.90, gpu=0.90)
claims.add("C0-train", f"the course ResNet reaches >= {target_acc:.0%} test accuracy on {data_name}",
           f"{model_name}: {test_acc:.2%} on {len(test):,} test images after {epochs} epochs "
           f"({sum(e['seconds'] for e in history.epochs):.0f} s)", holds=test_acc >= target_acc)

# %% [markdown]
# ## Claims

# %%
claims.show();

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
# * `ex.conv_output_size.hint()` prints a hint, another on each call;
# * `ex.conv_output_size.solution()` prints the reference solution.
#
# Try before you ask for a hint: the messages are part of the lesson.

# %%
from vitcourse.exercises import ch00 as ex

# %% tags=["exercise"]
def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """The side of a convolution's output for an input of side `size` (an int), as `torch.nn.Conv2d` computes it."""
    raise NotImplementedError("write conv_output_size, then run this cell")


ex.conv_output_size.check(conv_output_size)

# %% tags=["exercise"]
def conv_parameters(in_channels, out_channels, kernel, bias=True):
    """The number of parameters of a `kernel` x `kernel` convolution from `in_channels` to
    `out_channels` (an int)."""
    raise NotImplementedError("write conv_parameters, then run this cell")


ex.conv_parameters.check(conv_parameters)

# %% tags=["exercise"]
def global_average_pool(features):
    """(B, C, H, W) feature maps -> (B, C): the ResNet's read-out before its linear classifier."""
    raise NotImplementedError("write global_average_pool, then run this cell")


ex.global_average_pool.check(global_average_pool)

# %% [markdown]
# ## More exercises (experiments to run)
# 1. Use `receptive_field` to find how many 3x3 stride-1 layers reach the 16x16 receptive field of a
#    ViT-B/16 patch, and how many with a 2x2 pooling after every layer.
# 2. Count the weights of a 7x7 convolution against three stacked 3x3 ones with C channels. What
#    receptive field does each have?
# 3. Repeat the gradient-norm plot of section 7 for `plain20` and `resnet20`. Does the gap between
#    plain and residual grow with depth?
# 4. Break translation equivariance: use `stride=2` in section 9. Which shifts still commute with the
#    convolution, and why?
# 5. Train `plain110` and `resnet110` (or the deepest pair your machine allows) as in section 7. Does
#    the plain net's training loss keep rising with depth while the residual one's does not?
