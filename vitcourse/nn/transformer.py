"""Transformer layers with the two LayerNorm placements.

post-LN ("vanilla", Vaswani et al. 2017):  x = LN(x + Sublayer(x))
pre-LN  ("ViT", Dosovitskiy et al. 2021, eq. 2-3):  x = x + Sublayer(LN(x))
Wang et al. (2019) and Xiong et al. (2020) show why pre-LN trains stably without warm-up.
"""
from __future__ import annotations

import torch.nn as nn

from .attention import MultiHeadAttention
from .drop_path import DropPath

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class MLP(nn.Module):
    """The position-wise feed-forward block: Linear -> activation -> Dropout -> Linear -> Dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "gelu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class EncoderLayer(nn.Module):
    """Self-attention + MLP, each wrapped in a residual connection and a LayerNorm.

    ``norm_first=True`` is pre-LN (ViT), ``False`` is post-LN (the original Transformer).
    ``drop_path`` is the stochastic-depth rate of both residual branches.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm_first: bool = True,
                 activation: str = "gelu", norm_eps: float = 1e-6):
        super().__init__()
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiHeadAttention(dim, num_heads, dropout=attn_dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio), dropout=dropout, activation=activation)
        self.drop = nn.Dropout(dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x, mask=None, need_weights: bool = False):
        """x: (batch, n, dim). Returns (x, attention weights or None)."""
        if self.norm_first:
            a, weights = self.attn(self.norm1(x), mask=mask, need_weights=need_weights)
            x = x + self.drop_path(self.drop(a))
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        else:
            a, weights = self.attn(x, mask=mask, need_weights=need_weights)
            x = self.norm1(x + self.drop_path(self.drop(a)))
            x = self.norm2(x + self.drop_path(self.mlp(x)))
        return x, weights
