"""The Swin Transformer (Liu et al. 2021, "Hierarchical Vision Transformer using Shifted Windows").

A hierarchical ViT, built like a CNN's feature pyramid:
    1. patch partition + linear embedding: 4x4 patches (48 values for RGB) -> C channels, no class token;
    2. four stages of Swin blocks; attention only inside M x M windows (W-MSA), the windows of every
       second block shifted by M/2 (SW-MSA) so that information crosses window borders;
    3. between stages, patch merging: the 2x2 neighbours concatenated (4C) -> LayerNorm -> linear -> 2C,
       halving the resolution and doubling the width;
    4. a final LayerNorm, global average pooling and a linear head.
Positions enter as a relative position bias inside each window (eq. 4), not as an absolute embedding:
    Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B) V,  B from a (2M-1)^2 x heads table.
Cost per layer (section 3.2): Omega(MSA) = 4hwC^2 + 2(hw)^2 C, Omega(W-MSA) = 4hwC^2 + 2M^2 hwC.

Tensors inside a stage are (B, H, W, C), channels last, as in torchvision, whose ``swin_t`` our
``swin_t`` matches parameter for parameter (``convert.swin_from_torchvision``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
from einops import rearrange

from ..nn.attention import MultiHeadAttention, check_heads
from ..nn.drop_path import DropPath
from ..nn.transformer import MLP
from .registry import register_model


# ---- windows, the cyclic shift and its mask ------------------------------------------------------------
def window_partition(x: torch.Tensor, m: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, M*M, C): non-overlapping M x M windows, row-major, each flattened."""
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nh nw) (m1 m2) c", m1=m, m2=m)


def window_reverse(windows: torch.Tensor, m: int, h: int, w: int) -> torch.Tensor:
    """The inverse of ``window_partition``: (B * nW, M*M, C) -> (B, H, W, C)."""
    return rearrange(windows, "(b nh nw) (m1 m2) c -> b (nh m1) (nw m2) c", nh=h // m, nw=w // m, m1=m, m2=m)


def shift_regions(h: int, w: int, m: int, s: int) -> torch.Tensor:
    """(H, W) labels of the regions that the cyclic shift by s glues together (section 3.2, figure 4).

    After ``torch.roll(x, (-s, -s))`` the last window row and column hold pixels from opposite borders
    of the image. Rows are cut at H - M and H - s, columns at W - M and W - s: up to 3 x 3 = 9 regions.
    Tokens from different regions were not neighbours in the image and must not attend to each other.
    """
    labels = torch.zeros(h, w, dtype=torch.long)
    cuts_h, cuts_w = (0, h - m, h - s, h), (0, w - m, w - s, w)
    region = 0
    for i in range(3):
        for j in range(3):
            labels[cuts_h[i]:cuts_h[i + 1], cuts_w[j]:cuts_w[j + 1]] = region
            region += 1
    return labels


def shift_attention_mask(h: int, w: int, m: int, s: int) -> torch.Tensor:
    """(nW, M*M, M*M) boolean mask for SW-MSA, True where two tokens of a window may attend to each
    other: they come from the same region of the shifted image."""
    regions = window_partition(shift_regions(h, w, m, s)[None, :, :, None], m).squeeze(-1)  # (nW, M*M)
    return regions[:, :, None] == regions[:, None, :]


def relative_position_index(m: int) -> torch.Tensor:
    """(M*M, M*M) index into the (2M-1)^2-row bias table: the row of the relative offset (dy, dx) of two
    tokens of a window, each in -(M-1)..M-1, shifted to 0..2M-2, as (dy + M-1) * (2M-1) + (dx + M-1)."""
    coords = torch.stack(torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")).flatten(1)  # (2, M*M)
    rel = coords[:, :, None] - coords[:, None, :] + (m - 1)                                        # (2, n, n)
    return rel[0] * (2 * m - 1) + rel[1]


# ---- blocks ---------------------------------------------------------------------------------------------
class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention with a relative position bias (Swin eq. 4).

    ``MultiHeadAttention`` runs on every window at once (the windows are the batch); its additive
    ``bias`` carries the relative position bias B = table[relative_position_index], and the boolean
    ``mask`` the shifted windows' region mask.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int = 0,
                 attn_dropout: float = 0.0):
        super().__init__()
        self.num_heads, self.window_size, self.shift_size = num_heads, window_size, shift_size
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size).flatten(),
                             persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, M*M, M*M): for every pair of tokens in a window, its relative offset's row of the table."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index]            # (n*n, heads)
        return rearrange(bias, "(i j) h -> h i j", i=n, j=n)

    def forward(self, x, need_weights: bool = False):
        """x (B, H, W, C) -> (B, H, W, C), and the (B * nW, heads, M*M, M*M) weights if asked."""
        b, h, w, _ = x.shape
        m = self.window_size
        if h % m or w % m:
            raise ValueError(f"a {m}x{m} window does not tile a {h}x{w} feature map. Use an image size whose "
                             f"feature maps are multiples of {m} (sizes that work: multiples of {m} times the "
                             f"stage's reduction), or a window size that divides {h} and {w}.")
        s = self.shift_size if m < min(h, w) else 0  # a window as large as the map: nothing to shift
        mask = None
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))  # the cyclic shift
            mask = shift_attention_mask(h, w, m, s).to(x.device).repeat(b, 1, 1)[:, None]  # (B*nW, 1, n, n)
        out, weights = self.attn(window_partition(x, m), mask=mask, bias=self.relative_position_bias()[None],
                                 need_weights=need_weights)
        out = window_reverse(out, m, h, w)
        if s:
            out = torch.roll(out, shifts=(s, s), dims=(1, 2))  # the reverse shift
        return out, weights


class SwinBlock(nn.Module):
    """Pre-LN Transformer block with (S)W-MSA (Swin eq. 3): x + DropPath(W-MSA(LN(x))), then the MLP."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0, attn_dropout: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = WindowAttention(dim, num_heads, window_size, shift_size, attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, need_weights: bool = False):
        a, weights = self.attn(self.norm1(x), need_weights=need_weights)
        x = x + self.drop_path(a)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, H/2, W/2, 2C): each 2x2 neighbourhood concatenated (4C), LayerNorm, linear to
    2C. The order of the four is torchvision's: (0,0), (1,0), (0,1), (1,1) as (row, column) offsets."""

    def __init__(self, dim: int, norm_eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=norm_eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        h, w = x.shape[1:3]
        if h < 2 or w < 2 or h % 2 or w % 2:
            raise ValueError(f"patch merging needs an even feature map of at least 2x2, got {h}x{w}: use an "
                             "image size that stays even through every stage, or fewer stages")
        x = rearrange(x, "b (h dh) (w dw) c -> b h w (dw dh c)", dh=2, dw=2)
        return self.reduction(self.norm(x))


@dataclass
class SwinConfig:
    """Every knob of a Swin Transformer: ``dim`` is C, the width of stage 1 (doubled at every merge)."""
    image_size: int = 224
    patch_size: int = 4
    in_channels: int = 3
    num_classes: int = 1000
    dim: int = 96
    depths: tuple = (2, 2, 6, 2)
    num_heads: tuple = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.2
    norm_eps: float = 1e-5

    def __post_init__(self):
        self.depths, self.num_heads = tuple(self.depths), tuple(self.num_heads)
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} must name the same stages")
        for i, heads in enumerate(self.num_heads):
            try:
                check_heads(self.dim * 2 ** i, heads)
            except ValueError as err:
                raise ValueError(f"stage {i + 1}: {err}") from None
        if self.image_size % self.patch_size:
            raise ValueError(f"image size {self.image_size} is not divisible by patch size {self.patch_size}")
        side = self.image_size // self.patch_size
        for i in range(len(self.depths)):
            if i and (side % 2 or side < 2):
                raise ValueError(f"stage {i + 1} cannot merge a {side}x{side} feature map (it must be even): "
                                 f"use an image size that halves cleanly {len(self.depths) - 1} times after "
                                 f"the patch partition, or fewer stages")
            side = side // 2 if i else side
            if side % min(self.window_size, side):
                raise ValueError(f"stage {i + 1} has a {side}x{side} feature map that {self.window_size}x"
                                 f"{self.window_size} windows do not tile; pick an image size that gives "
                                 f"multiples of {self.window_size}, or a window size that divides {side}")

    def stage_sides(self) -> list[int]:
        """The side of each stage's square feature map: image_size / patch_size, halved at every merge
        (exact: ``__post_init__`` has checked that every merge halves an even map)."""
        side = self.image_size // self.patch_size
        return [side // 2 ** i for i in range(len(self.depths))]


class SwinTransformer(nn.Module):
    """Patch partition + linear embedding, four stages of alternating W-MSA / SW-MSA blocks with patch
    merging between them, LayerNorm, average pooling, linear head."""

    def __init__(self, config: SwinConfig | None = None, **overrides):
        super().__init__()
        self.config = c = SwinConfig(**{**asdict(config or SwinConfig()), **overrides})
        self.patch_embed = nn.Conv2d(c.in_channels, c.dim, c.patch_size, c.patch_size)  # partition + linear
        self.patch_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        total, done = sum(c.depths), 0
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i, (depth, heads, side) in enumerate(zip(c.depths, c.num_heads, c.stage_sides())):
            dim = c.dim * 2 ** i
            # A map smaller than the window is one window of the map's size, as in the Swin paper's
            # reference code (torchvision pads it to the window instead: convert.swin_from_torchvision).
            m = min(c.window_size, side)
            # Regular and shifted blocks alternate; a window as large as the map has nothing to shift.
            shift = m // 2 if m < side else 0
            blocks = [SwinBlock(dim, heads, m, 0 if k % 2 == 0 else shift, c.mlp_ratio, c.dropout,
                                c.attn_dropout, c.drop_path * (done + k) / max(total - 1, 1), c.norm_eps)
                      for k in range(depth)]
            self.stages.append(nn.ModuleList(blocks))
            done += depth
            if i < len(c.depths) - 1:
                self.merges.append(PatchMerging(dim, c.norm_eps))
        self.norm = nn.LayerNorm(c.dim * 2 ** (len(c.depths) - 1), eps=c.norm_eps)
        self.head = nn.Linear(c.dim * 2 ** (len(c.depths) - 1), c.num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)

    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    def features(self, x, return_attention: bool = False):
        """Images -> the last stage's normalised feature map (B, H/32, W/32, 8C) (and attention weights)."""
        c = self.config
        if x.ndim != 4 or x.shape[1:] != (c.in_channels, c.image_size, c.image_size):
            raise ValueError(f"this Swin expects images of shape (B, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}), got {tuple(x.shape)}")
        x = self.patch_norm(rearrange(self.patch_embed(x), "b c h w -> b h w c"))
        attentions = []
        for i, blocks in enumerate(self.stages):
            for block in blocks:
                x, weights = block(x, need_weights=return_attention)
                attentions.append(weights)
            if i < len(self.merges):
                x = self.merges[i](x)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def forward(self, x, return_attention: bool = False):
        if return_attention:
            x, attentions = self.features(x, return_attention=True)
            return self.head(x.mean(dim=(1, 2))), attentions
        return self.head(self.features(x).mean(dim=(1, 2)))


SWIN_CONFIGS = {
    # Liu et al. table 1 / torchvision: Swin-T, -S, -B at 224 px, window 7.
    "swin_t": dict(dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path=0.2),
    "swin_s": dict(dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path=0.3),
    "swin_b": dict(dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path=0.5),
    # The course's data, one per profile (chapter 07's recipe("swin")), each sized to chapter 03's ViT of
    # the same profile (about its parameters; tests/test_swin.py checks it, chapter 07 prints both models'
    # FLOPs): 2x2 patches (4x4 in smoke), windows that tile every stage (a 7x7 last stage at 28 px is one
    # window: plain attention, nothing to shift there).
    "swin_fashion_28": dict(image_size=28, patch_size=2, in_channels=1, num_classes=10, dim=40, depths=(2, 2),
                            num_heads=(2, 4), window_size=7, mlp_ratio=2.0, drop_path=0.0),
    "swin_cifar_32": dict(image_size=32, patch_size=2, in_channels=3, num_classes=10, dim=64, depths=(2, 2, 4),
                          num_heads=(2, 4, 8), window_size=4, mlp_ratio=2.0, drop_path=0.1),
    "swin_smoke_32": dict(image_size=32, patch_size=4, in_channels=3, num_classes=10, dim=16, depths=(2, 2),
                          num_heads=(2, 4), window_size=4, mlp_ratio=2.0, drop_path=0.0),
}


def _builder(name: str, defaults: dict):
    def build(**overrides) -> SwinTransformer:
        return SwinTransformer(SwinConfig(**{**defaults, **{k: v for k, v in overrides.items() if v is not None}}))
    build.__name__ = name
    build.__doc__ = f"Swin {name}: {defaults}; keyword arguments override any SwinConfig field."
    return build


def register_swin(name: str, defaults: dict) -> None:
    """Register a named Swin configuration (``create_model(name, **overrides)``), like ``register_vit``."""
    SwinConfig(**defaults)  # a bad configuration fails here, at registration, not at first use
    register_model(name, _builder(name, defaults))


for _name, _cfg in SWIN_CONFIGS.items():
    register_swin(_name, _cfg)
