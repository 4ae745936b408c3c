"""Position information for attention, which by itself is blind to order (a permutation of the
tokens permutes its output the same way).

- fixed sinusoids (Vaswani et al. 2017, section 3.5):
    PE(pos, 2i) = sin(pos / 10000^(2i/d)),   PE(pos, 2i+1) = cos(pos / 10000^(2i/d));
- a learned table, one vector per position (``nn.Embedding``-like; BERT, ViT).

Both are *added* to the token embeddings.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def sinusoidal_table(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(num_positions, dim) table of PE(pos, 2i) = sin(pos / base^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    if dim % 2 != 0:
        raise ValueError(f"the sinusoidal encoding pairs sin and cos channels, so dim must be even; got {dim}")
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    # 1 / base^(2i/d) for i = 0 .. d/2-1: wavelengths from 2*pi to base*2*pi (a geometric series)
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table.float()


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to x (batch, n, dim). No parameters: works for any n up to
    ``max_len`` (a buffer; raise it for longer inputs)."""

    def __init__(self, dim: int, max_len: int = 512, base: float = 10000.0):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, dim, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        n = x.shape[-2]
        if offset + n > self.pe.shape[0]:
            raise ValueError(f"sequence of {offset + n} positions is longer than max_len="
                             f"{self.pe.shape[0]}; build the encoding with a larger max_len")
        return x + self.pe[offset: offset + n].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned (max_len, dim) table to x (batch, n, dim); initialised N(0, 0.02^2) as in
    BERT/ViT. Cannot represent positions it was not built for."""

    def __init__(self, dim: int, max_len: int = 512):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(max_len, dim) * 0.02)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        n = x.shape[-2]
        if offset + n > self.weight.shape[0]:
            raise ValueError(f"sequence of {offset + n} positions is longer than max_len="
                             f"{self.weight.shape[0]}: a learned table has no vector for position "
                             f"{self.weight.shape[0]} and beyond; build it with a larger max_len")
        return x + self.weight[offset: offset + n]
