"""The Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

The input is built in five steps (section 3.1, eq. 1):
    1. cut the H x W image into N = HW/P^2 patches of P x P pixels, top-left to bottom-right;
    2. flatten each patch into a vector of P^2 C numbers;
    3. project each vector linearly to the width D (the patch embedding E);
    4. prepend a learned class token x_class;
    5. add a learned position embedding E_pos.
    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
Then L pre-LN encoder layers (eq. 2-3), a final LayerNorm on the class token (eq. 4), and a linear
head. Steps 1-3 are one strided convolution (``PatchEmbedding``) or, equally, patchify + a linear
layer (``LinearPatchEmbedding``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..nn.transformer import EncoderLayer
from .registry import register_model


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Steps 1-2: (B, C, H, W) images -> (B, N, P*P*C) flattened patches, in row-major order."""
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


class PatchEmbedding(nn.Module):
    """Steps 1-3 as one convolution: a P x P kernel with stride P sees each patch exactly once,
    and applies the same D x (P^2 C) matrix E to it. Output (B, N, D)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return rearrange(self.proj(x), "b d h w -> b (h w) d")


class LinearPatchEmbedding(nn.Module):
    """Steps 1-3 written as in the paper: patchify, then a linear layer. Same numbers as
    ``PatchEmbedding`` when the weights are shared (``from_conv``); the convolution is faster."""

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(patch_size * patch_size * in_channels, dim)

    def forward(self, x):
        return self.proj(patchify(x, self.patch_size))

    @classmethod
    def from_conv(cls, conv: PatchEmbedding) -> "LinearPatchEmbedding":
        """A linear embedding holding the convolution's kernel, flattened in patchify's order."""
        dim, c, p, _ = conv.proj.weight.shape
        lin = cls(c, dim, p)
        with torch.no_grad():
            lin.proj.weight.copy_(rearrange(conv.proj.weight, "d c p1 p2 -> d (p1 p2 c)"))
            lin.proj.bias.copy_(conv.proj.bias)
        return lin


@dataclass
class ViTConfig:
    """Every knob of a ViT. ``dim`` is the width D, ``depth`` the number of layers L, ``drop_path``
    the stochastic-depth rate of the last layer (it grows linearly from 0 at the first)."""
    image_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    num_classes: int = 1000
    dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    pool: str = "cls"          # "cls": read the class token (eq. 4); "mean": average the patch tokens
    norm_eps: float = 1e-6

    def __post_init__(self):
        if self.image_size % self.patch_size != 0:
            fits = [s for s in range(self.patch_size, 2 * self.image_size, self.patch_size)
                    if abs(s - self.image_size) < self.patch_size]
            raise ValueError(
                f"image size {self.image_size} is not divisible by patch size {self.patch_size}: the "
                f"patches must tile the image. Use an image size of {' or '.join(map(str, fits))}, or a "
                f"patch size that divides {self.image_size}.")
        if self.dim % self.num_heads != 0:
            raise ValueError(
                f"ViT width dim={self.dim} is not divisible by num_heads={self.num_heads}: each head "
                f"gets dim/num_heads channels. Pick num_heads in "
                f"{[h for h in range(1, 33) if self.dim % h == 0]} or change dim.")
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool={self.pool!r} is not a pooling; use 'cls' or 'mean'")

    @property
    def grid_size(self) -> int:
        """Patches per side: the image becomes grid_size x grid_size = N tokens."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """N = HW / P^2."""
        return self.grid_size ** 2


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: int, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resize a (1, prefix + g*g, D) position embedding to a new_grid x new_grid one (FixRes,
    Touvron et al. 2019; ViT section 3.2): the patch part is seen as a D-channel g x g image and
    resized by 2-D bicubic interpolation; the class token's embedding has no position and is kept."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"the position embedding holds {grid.shape[1]} patch positions, not a square grid; "
                         "only square grids can be interpolated")
    if new_grid < 1:
        raise ValueError(f"cannot interpolate the position embedding to a {new_grid}x{new_grid} grid: "
                         "the image must hold at least one patch")
    grid = rearrange(grid, "1 (h w) d -> 1 d h w", h=old)
    # Interpolate in float32: bicubic in half precision loses the small differences between neighbours.
    grid = F.interpolate(grid.float(), size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    grid = rearrange(grid, "1 d h w -> 1 (h w) d").to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


class ViT(nn.Module):
    """Vision Transformer: patch embedding, class token, position embedding, L pre-LN encoder layers
    (``vitcourse.nn.EncoderLayer``), final LayerNorm, linear head.

    ``forward(x, return_attention=True)`` also returns every layer's attention weights, a list of
    L tensors (B, heads, 1+N, 1+N) with the class token at index 0.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        config = replace(config or ViTConfig(), **overrides)
        self.config = c = config
        self.patch_embed = PatchEmbedding(c.in_channels, c.dim, c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.num_patches, c.dim))
        self.pos_drop = nn.Dropout(c.dropout)
        # Stochastic depth grows linearly with depth (Huang et al. 2016): early layers are kept more.
        rates = [c.drop_path * i / max(c.depth - 1, 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            EncoderLayer(c.dim, c.num_heads, c.mlp_ratio, dropout=c.dropout, attn_dropout=c.attn_dropout,
                         drop_path=r, norm_first=True, activation="gelu", norm_eps=c.norm_eps)
            for r in rates)
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.head = nn.Linear(c.dim, c.num_classes)
        self.reset_parameters()

    def reset_parameters(self):
        """Truncated-normal(0.02) for the embeddings and linear layers (as in BERT, DeiT and timm)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Parameters the optimizer should not decay (vitcourse.train reads this)."""
        return {"pos_embed", "cls_token"}

    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    def embed(self, x):
        """The five input steps: (B, C, H, W) -> z_0 of shape (B, 1+N, D)."""
        c = self.config
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"this ViT expects images of shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), got "
                f"{tuple(x.shape)}. For another resolution call model.set_image_size(size) first "
                "(it interpolates the position embedding).")
        x = self.patch_embed(x)                                          # steps 1-3: (B, N, D)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)                                   # step 4: (B, 1+N, D)
        return self.pos_drop(x + self.pos_embed)                         # step 5

    def encode(self, x, return_attention: bool = False):
        """Images -> final normalised tokens (B, 1+N, D), and the attention weights if asked."""
        x = self.embed(x)
        attentions = []
        for block in self.blocks:
            x, weights = block(x, need_weights=return_attention)
            attentions.append(weights)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def pool(self, tokens):
        """y = LN(z_L^0) (eq. 4) reads the class token; 'mean' averages the patch tokens instead."""
        return tokens[:, 0] if self.config.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def forward(self, x, return_attention: bool = False):
        if return_attention:
            tokens, attentions = self.encode(x, return_attention=True)
            return self.head(self.pool(tokens)), attentions
        return self.head(self.pool(self.encode(x)))

    @torch.no_grad()
    def set_image_size(self, image_size: int) -> "ViT":
        """Run at a new resolution (FixRes): the patch size stays, the number of patches changes and the
        position embedding is interpolated to the new grid. Returns self."""
        c = self.config
        if image_size % c.patch_size != 0 or image_size < c.patch_size:
            raise ValueError(
                f"cannot interpolate the position embedding to {image_size} px: the new size must be a "
                f"positive multiple of the patch size {c.patch_size} "
                f"(e.g. {max(c.patch_size, image_size // c.patch_size * c.patch_size)} or "
                f"{(image_size // c.patch_size + 1) * c.patch_size}).")
        new = resize_pos_embed(self.pos_embed.data, image_size // c.patch_size)
        self.pos_embed = nn.Parameter(new)
        self.config = replace(c, image_size=image_size)
        return self

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in asdict(self.config).items())


# ---- named configurations --------------------------------------------------------------------------
# ImageNet models of the ViT paper (table 1) and DeiT (Ti, S): width D, depth L, heads, MLP 4D.
IMAGENET = {
    "tiny": dict(dim=192, depth=12, num_heads=3),
    "small": dict(dim=384, depth=12, num_heads=6),
    "base": dict(dim=768, depth=12, num_heads=12),
    "large": dict(dim=1024, depth=24, num_heads=16),
    "huge": dict(dim=1280, depth=32, num_heads=16),
}
# Small-image models for the course's data (patch 4: 8x8 = 64 tokens at 32 px, 7x7 = 49 at 28 px).
SMALL_IMAGE = {
    "vit_cifar_patch4_32": dict(image_size=32, patch_size=4, in_channels=3, num_classes=10,
                                dim=192, depth=9, num_heads=3, mlp_ratio=2.0, drop_path=0.1),
    "vit_fashion_patch4_28": dict(image_size=28, patch_size=4, in_channels=1, num_classes=10,
                                  dim=96, depth=6, num_heads=4, mlp_ratio=2.0),
}


CONFIGS: dict[str, dict] = {}  # name -> ViTConfig fields of every registered ViT


def _register(name: str, defaults: dict):
    def build(num_classes: int | None = None, in_channels: int | None = None,
              image_size: int | None = None, **overrides) -> ViT:
        given = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        overrides.update({k: v for k, v in given.items() if v is not None})
        return ViT(ViTConfig(**{**defaults, **overrides}))
    build.__name__ = name
    build.__doc__ = f"ViT {name}: {defaults}; keyword arguments override any ViTConfig field."
    CONFIGS[name] = defaults
    register_model(name)(build)


for _size, _cfg in IMAGENET.items():
    for _patch in (14, 16, 32):
        _register(f"vit_{_size}_patch{_patch}_224", dict(image_size=224, patch_size=_patch, **_cfg))
for _name, _cfg in SMALL_IMAGE.items():
    _register(_name, _cfg)


def config_of(name: str, **overrides) -> ViTConfig:
    """The ViTConfig of a registered ViT, without building it (e.g. to count its patches)."""
    if name not in CONFIGS:
        raise KeyError(f"{name!r} is not a named ViT; known: {', '.join(sorted(CONFIGS))}")
    return ViTConfig(**{**CONFIGS[name], **overrides})
