"""SL-ViT (Lee, Lee & Song 2021, "Vision Transformer for Small-Size Datasets"; seed 002): two fixes for
a ViT trained on little data.

* **Shifted Patch Tokenization** (SPT, section 3.2): a plain patch token sees only its own P x P pixels.
  SPT shifts the image by half a patch in the four diagonal directions (zero fill), concatenates the
  four copies with the input (5C channels), and then patchifies, so that each token also sees half a
  patch around its own: S = [x; x_shifted x 4], tokens = LN(flatten(patches(S))) E.
* **Locality Self-Attention** (LSA, section 3.3): a learnable softmax temperature (one per head,
  initialised to the usual 1/sqrt(d_k)) and *diagonal masking*, which takes every token's attention
  to itself out of the softmax, so that the scores go to the other tokens and become sharper:
  SA(x) = softmax(R^M / tau) x E_v, with R^M_ij = R_ij for i != j and -inf for i = j, R = x E_q (x E_k)^T.

The receptive field of a token (equation 1): r_token = r_trans * j + (k - j), with k the tokenizer's
kernel, j its stride and r_trans the receptive field of what it is applied to (1 for raw pixels).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .attention import MultiHeadAttention

# The four diagonal directions, as (dx, dy) in units of half a patch: left-up, right-up, left-down, right-down.
DIAGONALS = ((-1, -1), (1, -1), (-1, 1), (1, 1))


def shift_image(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate (B, C, H, W) images by (dx, dy) pixels (positive: right, down), filling with zeros."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


class ShiftedPatchTokenization(nn.Module):
    """(B, C, H, W) -> (B, N, dim): the input and its four diagonal half-patch shifts (5C channels),
    cut into P x P patches, each flattened (P^2 * 5C), layer-normalised and projected to ``dim``.

    ``directions=()`` keeps the LayerNorm and drops the shifts: a plain patch embedding with SPT's
    normalisation, the control that tells the two parts of SPT apart."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, directions=DIAGONALS):
        super().__init__()
        self.patch_size = patch_size
        self.shift = patch_size // 2
        self.directions = tuple(tuple(d) for d in directions)
        n = patch_size * patch_size * (1 + len(self.directions)) * in_channels
        self.norm = nn.LayerNorm(n)
        self.proj = nn.Linear(n, dim)

    def shifted(self, x):
        """The 5C-channel stack [x, four diagonal shifts of x] before patchifying (x alone without shifts)."""
        s = self.shift
        return torch.cat([x] + [shift_image(x, dx * s, dy * s) for dx, dy in self.directions], dim=1)

    def forward(self, x):
        p = self.patch_size
        patches = rearrange(self.shifted(x), "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)
        return self.proj(self.norm(patches))


class LocalitySelfAttention(MultiHeadAttention):
    """Multi-head self-attention with a learnable temperature (one per head, initialised to
    1/sqrt(d_k)) and diagonal masking: a token's weight on itself is exactly 0. Same call as
    ``MultiHeadAttention``; both of its paths (fused kernel and explicit weights) agree."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__(dim, num_heads, dropout=dropout, bias=bias)
        self.scale = nn.Parameter(torch.full((num_heads,), self.head_dim ** -0.5))

    def forward(self, x, context=None, mask=None, bias=None, scale=None, need_weights: bool = False):
        n = x.shape[1]
        not_self = ~torch.eye(n, dtype=torch.bool, device=x.device)
        mask = not_self if mask is None else mask & not_self
        return super().forward(x, context, mask=mask, bias=bias, scale=self.scale, need_weights=need_weights)


def token_receptive_field(r_trans: int, kernel: int, stride: int) -> int:
    """SL-ViT eq. 1: r_token = r_trans * j + (k - j). A ViT patch embedding on pixels (r_trans = 1,
    k = j = P) sees P pixels; SPT's tokens (k = 2P: the patch and half a patch each side, j = P) see 2P."""
    return r_trans * stride + (kernel - stride)


def receptive_field(layers) -> int:
    """The receptive field in input pixels of a stack of (kernel, stride) layers along one path,
    applying SL-ViT's eq. 1, r = r_prev * j + (k - j), in its recursive form: each layer adds
    (k - 1) times the product of the strides before it. ViT-B/16's patch embedding: [(16, 16)] -> 16."""
    r, jump = 1, 1
    for k, s in layers:
        r += (k - 1) * jump
        jump *= s
    return r
