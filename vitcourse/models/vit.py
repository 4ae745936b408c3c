"""The Vision Transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

The input is built in five steps (section 3.1, eq. 1):
    1. cut the H x W image into N = HW/P^2 patches of P x P pixels, top-left to bottom-right;
    2. flatten each patch into a vector of P^2 C numbers;
    3. project each vector linearly to the width D (the patch embedding E);
    4. prepend a learned class token x_class;
    5. add a learned position embedding E_pos.
    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos
Then L pre-LN encoder layers (eq. 2-3), a final LayerNorm on the class token (eq. 4), and a linear
head.

The model is assembled from named parts (``vitcourse.models.parts``): the ``tokenizer`` does steps
1-3 (``patch``: one strided convolution; ``linear``: patchify + a linear layer; a hybrid's CNN stem;
SL-ViT's shifted patch tokenization), the ``attention`` is each layer's (``mhsa``; SL-ViT's ``lsa``),
the ``prefix`` puts tokens in front (``cls``: the class token; DeiT adds a distillation token), and
``pool`` says what the head reads. A DeiT, an SL-ViT or a hybrid is a ``ViTConfig``, not a new class.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..nn.attention import check_heads
from ..nn.transformer import EncoderLayer
from . import hybrid  # noqa: F401  (registers the "resnet" tokenizer the hybrid configs below use)
from .parts import ATTENTIONS, PREFIXES, TOKENIZERS, LinearPatchEmbedding, PatchEmbedding, patchify  # noqa: F401
from .registry import register_model


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
    tokenizer: str = "patch"   # steps 1-3, a name in parts.TOKENIZERS
    tokenizer_args: dict = field(default_factory=dict)  # the tokenizer's own settings (a hybrid's CNN)
    attention: str = "mhsa"    # every layer's attention, a name in parts.ATTENTIONS
    prefix: str = "cls"        # the tokens in front of the patches, a name in parts.PREFIXES

    def __post_init__(self):
        if self.image_size % self.patch_size != 0:
            fits = [s for s in range(self.patch_size, 2 * self.image_size, self.patch_size)
                    if abs(s - self.image_size) < self.patch_size]
            raise ValueError(
                f"image size {self.image_size} is not divisible by patch size {self.patch_size}: the "
                f"patches must tile the image. Use an image size of {' or '.join(map(str, fits))}, or a "
                f"patch size that divides {self.image_size}.")
        check_heads(self.dim, self.num_heads)
        TOKENIZERS.check(self.tokenizer)
        ATTENTIONS.check(self.attention)
        PREFIXES.check(self.prefix)
        if self.pool not in ("cls", "mean"):
            raise ValueError(f"pool={self.pool!r} is not a pooling; use 'cls' or 'mean'")
        if self.prefix == "cls_dist" and self.pool != "cls":
            raise ValueError("a DeiT (prefix='cls_dist') reads its class and distillation tokens: use pool='cls'")
        if self.pool == "cls" and self.prefix == "none":
            raise ValueError("pool='cls' reads the class token, but prefix='none' has none: "
                             "use pool='mean', or a prefix with a class token (e.g. prefix='cls')")

    @property
    def grid_size(self) -> int:
        """Patches per side: the image becomes grid_size x grid_size = N tokens."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """N = HW / P^2."""
        return self.grid_size ** 2


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: int, num_prefix_tokens: int) -> torch.Tensor:
    """Resize a (1, prefix + g*g, D) position embedding to a new_grid x new_grid one (FixRes,
    Touvron et al. 2019; ViT section 3.2): the patch part is seen as a D-channel g x g image and
    resized by 2-D bicubic interpolation; the prefix tokens' embeddings have no position and are kept."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old * old != grid.shape[1]:
        raise ValueError(f"the position embedding holds {grid.shape[1]} patch positions after "
                         f"{num_prefix_tokens} prefix tokens, not a square grid; only square grids can be "
                         "interpolated (check num_prefix_tokens)")
    if new_grid < 1:
        raise ValueError(f"cannot interpolate the position embedding to a {new_grid}x{new_grid} grid: "
                         "the image must hold at least one patch")
    grid = rearrange(grid, "1 (h w) d -> 1 d h w", h=old)
    # Interpolate in float32: bicubic in half precision loses the small differences between neighbours.
    grid = F.interpolate(grid.float(), size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    grid = rearrange(grid, "1 d h w -> 1 (h w) d").to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


class ViT(nn.Module):
    """Vision Transformer: tokenizer, prefix tokens, position embedding, L pre-LN encoder layers
    (``vitcourse.nn.EncoderLayer`` with the configured attention), final LayerNorm, linear head.

    ``forward(x, return_attention=True)`` also returns every layer's attention weights, a list of
    L tensors (B, heads, T, T) with T = num_prefix_tokens + N and the prefix tokens first.
    """

    def __init__(self, config: ViTConfig | None = None, **overrides):
        super().__init__()
        config = replace(config or ViTConfig(), **overrides)
        self.config = c = config
        self.patch_embed = TOKENIZERS.build(c.tokenizer, c)                      # steps 1-3
        self.prefix = PREFIXES.build(c.prefix, c)                                # step 4
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + c.num_patches, c.dim))
        self.pos_drop = nn.Dropout(c.dropout)
        # Stochastic depth grows linearly with depth (Huang et al. 2016): early layers are kept more.
        rates = [c.drop_path * i / max(c.depth - 1, 1) for i in range(c.depth)]
        attn_layer = lambda dim, heads, dropout: ATTENTIONS.build(c.attention, dim, heads, dropout=dropout)  # noqa: E731
        self.blocks = nn.ModuleList(
            EncoderLayer(c.dim, c.num_heads, c.mlp_ratio, dropout=c.dropout, attn_dropout=c.attn_dropout,
                         drop_path=r, norm_first=True, activation="gelu", norm_eps=c.norm_eps,
                         attn_layer=attn_layer)
            for r in rates)
        self.norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.head = nn.Linear(c.dim, c.num_classes)
        self.reset_parameters()

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens in front of the patches (1: the class token; 2 with DeiT's distillation token)."""
        return self.prefix.num_tokens

    def _parts(self):
        return (self.patch_embed, self.prefix)

    @torch.no_grad()
    def reset_head(self, num_classes: int) -> "ViT":
        """A new, zero-initialised classification head for ``num_classes`` (fine-tuning on a new task;
        ViT section 3.2 and appendix B.1.1: "we remove the pre-trained prediction head and attach a
        zero-initialized D x K feedforward layer"). Returns self."""
        self.head = nn.Linear(self.config.dim, num_classes).to(self.pos_embed.device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        if hasattr(self.prefix, "reset_head"):  # a part with a head of its own (DeiT's distillation head)
            self.prefix.reset_head(num_classes)
        self.config = replace(self.config, num_classes=num_classes)
        return self

    def reset_parameters(self):
        """Truncated-normal(0.02) for the linear and convolution layers the ViT owns and for the
        position embedding (as in BERT, DeiT and timm); biases zero. A part with its own
        ``reset_parameters`` (a CNN stem with Kaiming init, the prefix tokens) initialises itself."""
        for module in (self.patch_embed, self.prefix, self.blocks, self.head):
            if module in self._parts() and hasattr(module, "reset_parameters"):
                continue  # the part initialises itself below
            for m in module.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for part in self._parts():
            if hasattr(part, "reset_parameters"):
                part.reset_parameters()

    def no_weight_decay(self) -> set[str]:
        """Parameters the optimizer should not decay (vitcourse.train reads this)."""
        names = {"pos_embed"}
        for attr in ("patch_embed", "prefix"):
            names |= {f"{attr}.{n}" for n in getattr(getattr(self, attr), "no_weight_decay", set)()}
        return names

    @property
    def grid_size(self) -> int:
        return self.config.grid_size

    def embed(self, x):
        """The five input steps: (B, C, H, W) -> z_0 of shape (B, prefix + N, D)."""
        c = self.config
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(
                f"this ViT expects images of shape (B, {c.in_channels}, {c.image_size}, {c.image_size}), got "
                f"{tuple(x.shape)}. For another resolution call model.set_image_size(size) first "
                "(it interpolates the position embedding).")
        x = self.prefix(self.patch_embed(x))                             # steps 1-4: (B, prefix + N, D)
        return self.pos_drop(x + self.pos_embed)                         # step 5

    def encode(self, x, return_attention: bool = False):
        """Images -> final normalised tokens (B, prefix + N, D), and the attention weights if asked."""
        x = self.embed(x)
        attentions = []
        for block in self.blocks:
            x, weights = block(x, need_weights=return_attention)
            attentions.append(weights)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def pool(self, tokens):
        """y = LN(z_L^0) (eq. 4) reads the class token; 'mean' averages the patch tokens instead."""
        if self.config.pool == "cls":
            return tokens[:, 0]
        return tokens[:, self.num_prefix_tokens:].mean(dim=1)

    def forward(self, x, return_attention: bool = False):
        tokens, attentions = self.encode(x, return_attention=True) if return_attention else (self.encode(x), None)
        out = self.prefix.output(self.head(self.pool(tokens)), tokens)
        return (out, attentions) if return_attention else out

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
        new = resize_pos_embed(self.pos_embed.data, image_size // c.patch_size, self.num_prefix_tokens)
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
# Small-image models for the course's data, one per profile (``vitcourse.recipes`` says which
# chapter trains which): the gpu one on CIFAR (patch 4: 8x8 = 64 tokens at 32 px), the cpu one on
# Fashion-MNIST (patch 4: 7x7 = 49 tokens at 28 px, narrow and shallow so that it trains in minutes on
# a laptop CPU), the smoke one on 32 px synthetic data. vit_fashion_patch7_28 (a 4x4 grid) was the
# cpu model before: too few positions to show a 2-D position structure (chapter 03).
SMALL_IMAGE = {
    "vit_cifar_patch4_32": dict(image_size=32, patch_size=4, in_channels=3, num_classes=10,
                                dim=192, depth=9, num_heads=3, mlp_ratio=2.0, drop_path=0.1),
    "vit_fashion_patch4_28": dict(image_size=28, patch_size=4, in_channels=1, num_classes=10,
                                  dim=64, depth=4, num_heads=4, mlp_ratio=2.0),
    "vit_fashion_patch7_28": dict(image_size=28, patch_size=7, in_channels=1, num_classes=10,
                                  dim=128, depth=6, num_heads=4, mlp_ratio=2.0),
    "vit_smoke_patch8_32": dict(image_size=32, patch_size=8, in_channels=3, num_classes=10,
                                dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
}
# Hybrids (ViT section 3.1): the same Transformers on tokens cut from the feature map of chapter 00's
# ResNet (three stages of one block, stride 4): 1x1 patches of the 7x7 (28 px) or 8x8 (32 px) map.
_RESNET_STEM = dict(tokenizer="resnet", tokenizer_args=dict(blocks=1, widths=(16, 32, 64)))
SMALL_IMAGE.update({
    "vit_hybrid_cifar_32": {**SMALL_IMAGE["vit_cifar_patch4_32"], **_RESNET_STEM, "patch_size": 4},
    "vit_hybrid_fashion_28": {**SMALL_IMAGE["vit_fashion_patch4_28"], **_RESNET_STEM, "patch_size": 4},
    "vit_hybrid_smoke_32": {**SMALL_IMAGE["vit_smoke_patch8_32"], **_RESNET_STEM, "patch_size": 8},
})


# DeiT (Touvron et al. 2021): a ViT with a distillation token, trained from a CNN teacher. The
# ImageNet ones at 224/16 (DeiT-Ti/S/B, table 1), and the course's profile models with the token.
DEIT = {f"deit_{size}_distilled_patch16_224": dict(image_size=224, patch_size=16, prefix="cls_dist", **IMAGENET[size])
        for size in ("tiny", "small", "base")}
DEIT.update({name.replace("vit_", "deit_", 1): {**SMALL_IMAGE[name], "prefix": "cls_dist"}
             for name in ("vit_cifar_patch4_32", "vit_fashion_patch4_28", "vit_fashion_patch7_28",
                          "vit_smoke_patch8_32")})

# SL-ViT's ablation (Lee et al. 2021): the profile ViTs with Shifted Patch Tokenization, Locality
# Self-Attention, or both (SL-ViT).
SLVIT = {}
for _base in ("vit_cifar_patch4_32", "vit_fashion_patch4_28", "vit_fashion_patch7_28", "vit_smoke_patch8_32"):
    for _tag, _parts in (("spt", dict(tokenizer="spt")), ("lsa", dict(attention="lsa")),
                         ("slvit", dict(tokenizer="spt", attention="lsa"))):
        SLVIT[_base.replace("vit_", f"{_tag}_", 1)] = {**SMALL_IMAGE[_base], **_parts}

CONFIGS: dict[str, dict] = {}  # name -> ViTConfig fields of every registered ViT


def register_vit(name: str, defaults: dict) -> None:
    """Register a named ViT configuration: ``create_model(name, **overrides)`` builds it, and any
    ViTConfig field can be overridden (``num_classes``, ``in_channels``, ``image_size``...)."""
    def build(**overrides) -> ViT:
        return ViT(config_of(name, **{k: v for k, v in overrides.items() if v is not None}))
    build.__name__ = name
    build.__doc__ = f"ViT {name}: {defaults}; keyword arguments override any ViTConfig field."
    ViTConfig(**defaults)  # a bad configuration fails here, at registration, not at first use
    CONFIGS[name] = defaults
    register_model(name, build)


for _size, _cfg in IMAGENET.items():
    for _patch in (14, 16, 32):
        register_vit(f"vit_{_size}_patch{_patch}_224", dict(image_size=224, patch_size=_patch, **_cfg))
for _name, _cfg in {**SMALL_IMAGE, **DEIT, **SLVIT}.items():
    register_vit(_name, _cfg)


def config_of(name: str, **overrides) -> ViTConfig:
    """The ViTConfig of a registered ViT, without building it (e.g. to count its patches)."""
    if name not in CONFIGS:
        raise KeyError(f"{name!r} is not a named ViT; known: {', '.join(sorted(CONFIGS))}")
    return ViTConfig(**{**CONFIGS[name], **overrides})
