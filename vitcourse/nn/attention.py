"""Attention: scaled dot-product, masks, and multi-head attention.

Mask convention (the one of ``F.scaled_dot_product_attention``): a boolean mask is True where
attending is allowed. Masked scores become -inf before the softmax, so they get exactly zero weight.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


def dot_product_attention(query, key, value, mask=None, scale=None, bias=None, dropout_p: float = 0.0):
    """Attention(Q, K, V) = softmax(Q K^T * scale + B) V  (Vaswani et al. 2017, eq. 1; the additive
    bias B is Swin's relative position bias and shift mask, Liu et al. 2021, eq. 4).

    ``scale=None`` means 1/sqrt(d_k); ``scale=1.0`` is the unscaled form of the seed-003 example; a
    tensor broadcastable to the scores (e.g. (heads, 1, 1)) is a learnable temperature (SL-ViT's LSA).
    Shapes: query (..., n, d_k), key (..., m, d_k), value (..., m, d_v); ``mask`` (bool, True = may
    attend) and ``bias`` (float, added to the scores) broadcastable to (..., n, m).
    Returns (context (..., n, d_v), weights (..., n, m)).
    A query whose every key is masked gets all-zero weights (and a zero context), not NaN.
    """
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        # softmax over a row of -inf is 0/0; such a row attends to nothing.
        weights = weights.nan_to_num(0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return torch.matmul(weights, value), weights


def check_heads(dim: int, num_heads: int) -> None:
    """Each head gets dim/num_heads channels: raise a clear error when the heads do not divide the width."""
    if dim % num_heads != 0:
        raise ValueError(
            f"width {dim} is not divisible by {num_heads} heads: each head gets width/heads channels. "
            f"Pick heads that divide the width (divisors of {dim} up to 32: "
            f"{[h for h in range(1, min(dim, 32) + 1) if dim % h == 0]}), or change the width.")


def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(batch, max_len) boolean mask, True on real tokens and False on padding.

    Use as ``mask[:, None, None, :]`` to hide padded keys from every query of every head.
    """
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def causal_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) lower-triangular boolean mask: position t attends to positions <= t only."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    (Vaswani et al. 2017, section 3.2.2).

    The h projections are one fused ``qkv`` linear layer (rows ordered q | k | v, heads contiguous,
    the layout of ``torch.nn.MultiheadAttention.in_proj_weight``). The fast path is
    ``F.scaled_dot_product_attention``; ``need_weights=True`` takes the explicit path, which also
    returns the (batch, heads, n, m) attention weights for plots. Both give the same output.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        check_heads(dim, num_heads)
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)

    def _project(self, x, context):
        """Q from x; K and V from context (cross-attention) or from x (self-attention)."""
        if context is None:
            return rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(x, w[: self.dim], None if b is None else b[: self.dim])
        kv = F.linear(context, w[self.dim:], None if b is None else b[self.dim:])
        q = rearrange(q, "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(kv, "b m (two h d) -> two b h m d", two=2, h=self.num_heads)
        return q, k, v

    def _head_scale(self, scale, like):
        """``scale`` as something that broadcasts over (batch, heads, n, m): None -> 1/sqrt(d_k), a
        float as is, a tensor of one value per head -> (heads, 1, 1)."""
        if scale is None:
            return 1.0 / math.sqrt(self.head_dim)
        if torch.is_tensor(scale) and scale.numel() > 1:
            if scale.numel() != self.num_heads:
                raise ValueError(f"a per-head scale needs {self.num_heads} values (one per head), "
                                 f"got shape {tuple(scale.shape)}; or pass a single number")
            return scale.reshape(self.num_heads, 1, 1).to(like.dtype)
        return scale.reshape(()).to(like.dtype) if torch.is_tensor(scale) else float(scale)

    def forward(self, x, context=None, mask=None, bias=None, scale=None, need_weights: bool = False):
        """x: (batch, n, dim); context: (batch, m, dim) or None; ``mask`` (bool, True = may attend) and
        ``bias`` (float, added to the scores) broadcastable to (batch, heads, n, m); ``scale`` None
        (1/sqrt(d_k)), a number, or a tensor with one value or one per head (may be learnable).
        Returns (output, weights or None)."""
        q, k, v = self._project(x, context)
        p = self.dropout if self.training else 0.0
        s = self._head_scale(scale, q)
        if need_weights:
            out, weights = dot_product_attention(q, k, v, mask=mask, scale=s, bias=bias, dropout_p=p)
        else:
            weights = None
            if torch.is_tensor(s):
                # The fused kernel takes a Python float: fold a tensor scale into the queries instead
                # ((s q) k^T = s (q k^T)), which keeps the gradient of a learnable temperature.
                q, s = q * s, 1.0
            attn_mask, live = bias, None
            if mask is not None:
                # Rows with no allowed key would give NaN in some kernels: let them attend
                # everywhere, then zero their output (what the explicit path returns).
                live = mask.any(dim=-1, keepdim=True)
                allowed = mask | ~live
                if bias is None:
                    attn_mask = allowed
                else:  # one float mask: the bias where allowed, -inf where not
                    attn_mask = torch.where(allowed, bias.to(q.dtype), float("-inf"))
            elif attn_mask is not None:
                attn_mask = attn_mask.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p, scale=s)
            if live is not None:
                out = out * live
        return self.proj(rearrange(out, "b h n d -> b n (h d)")), weights


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015), eq. 5-6:  e_ij = v^T tanh(W s_{i-1} + U h_j),  alpha_ij = softmax_j(e_ij),
    c_i = sum_j alpha_ij h_j.

    The score is a one-hidden-layer MLP of the decoder state s_{i-1} (the query) and each encoder
    output h_j (the keys). ``U h_j`` does not depend on the decoder step, so a decoder computes it
    once with ``project_keys`` and passes it back in as ``projected_keys`` at every step.
    """

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.W = nn.Linear(query_dim, attn_dim, bias=False)
        self.U = nn.Linear(key_dim, attn_dim)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, keys):
        return self.U(keys)

    def forward(self, query, keys, values=None, mask=None, projected_keys=None):
        """query (B, query_dim); keys (B, m, key_dim); values (B, m, d_v), default ``keys``;
        mask (B, m) bool, True on real tokens (``padding_mask(lengths)``).
        Returns (context (B, d_v), weights (B, m)); padded positions get weight exactly 0."""
        values = keys if values is None else values
        uh = self.project_keys(keys) if projected_keys is None else projected_keys
        energies = self.v(torch.tanh(self.W(query)[:, None, :] + uh)).squeeze(-1)  # (B, m)
        if mask is not None:
            energies = energies.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(energies, dim=-1)
        if mask is not None:
            weights = weights.nan_to_num(0.0)  # a fully padded row attends to nothing
        context = torch.einsum("bm,bmd->bd", weights, values)
        return context, weights
