"""Stochastic depth (Huang et al. 2016): drop a whole residual branch per sample."""
import torch
import torch.nn as nn


class DropPath(nn.Module):
    """During training, zero the branch for a random fraction ``p`` of the samples in the batch and
    scale the rest by 1/(1-p), so the expected output is unchanged; identity in eval mode."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        # Scale the (B, 1, ..., 1) mask, not the activations: one pass over x instead of two.
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        return x * keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
