"""The named parts a ViT is assembled from (timm's route: a variant overrides one part).

Three registries, each mapping a name to a factory:

    TOKENIZERS  name -> f(config) -> module, (B, C, H, W) images -> (B, N, D) tokens
    ATTENTIONS  name -> f(dim, num_heads, dropout=...) -> module with MultiHeadAttention's call,
                forward(x, mask=None, need_weights=False) -> (out, weights or None)
    PREFIXES    name -> f(config) -> module with ``num_tokens``, ``forward(tokens)`` that puts its
                tokens in front, and ``output(logits, tokens)`` that turns the head's logits into the
                model's output (a distillation token adds its own head there)

A new part is one class and one ``register`` line; ``ViT.forward`` never changes. A part that
defines ``reset_parameters`` initialises itself (a CNN stem keeps its Kaiming init); the ViT gives
the others the truncated-normal(0.02) init of its own layers.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from einops import rearrange

from .._names import unknown_name
from ..nn.attention import MultiHeadAttention
from ..nn.slvit import LocalitySelfAttention, ShiftedPatchTokenization


class Registry:
    """Named factories of one kind of part, with errors that list the known names."""

    def __init__(self, kind: str):
        self.kind, self._items = kind, {}

    def register(self, name: str, factory: Callable) -> Callable:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = factory
        return factory

    def names(self) -> list[str]:
        return sorted(self._items)

    def check(self, name: str) -> None:
        if name not in self._items:
            raise ValueError(unknown_name(self.kind, name, self._items))

    def build(self, name: str, *args, **kwargs):
        self.check(name)
        return self._items[name](*args, **kwargs)

    def __contains__(self, name: str) -> bool:
        return name in self._items


TOKENIZERS = Registry("tokenizer")
ATTENTIONS = Registry("attention")
PREFIXES = Registry("prefix")


# ---- tokenizers: the first three input steps ----------------------------------------------------------
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


TOKENIZERS.register("patch", lambda c: PatchEmbedding(c.in_channels, c.dim, c.patch_size))
TOKENIZERS.register("linear", lambda c: LinearPatchEmbedding(c.in_channels, c.dim, c.patch_size))
TOKENIZERS.register("spt", lambda c: ShiftedPatchTokenization(c.in_channels, c.dim, c.patch_size))  # SL-ViT
# SPT without its shifts (patches, LayerNorm, linear): the control that separates the shifts from the norm.
TOKENIZERS.register("patch_norm", lambda c: ShiftedPatchTokenization(c.in_channels, c.dim, c.patch_size, directions=()))


# ---- attention ------------------------------------------------------------------------------------------
ATTENTIONS.register("mhsa", MultiHeadAttention)
ATTENTIONS.register("lsa", LocalitySelfAttention)  # SL-ViT


# ---- prefix tokens: what goes in front of the patches, and what the model outputs ----------------------
class ClassToken(nn.Module):
    """Step 4: one learned class token x_class in front of the patch tokens (ViT eq. 1). The head
    reads it alone (pool "cls"), so the model's output is the head's logits."""
    num_tokens = 1

    def __init__(self, dim: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def reset_parameters(self):
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def forward(self, tokens):
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def output(self, logits, tokens):
        return logits


class NoPrefix(nn.Module):
    """No token in front: the patches alone (pool "mean" then reads their average)."""
    num_tokens = 0

    def forward(self, tokens):
        return tokens

    def output(self, logits, tokens):
        return logits


class DistillationTokens(ClassToken):
    """DeiT (Touvron et al. 2021, section 4, figure 2): a class token and a *distillation token* in
    front of the patches. The distillation token has its own linear head and learns from the
    teacher's predictions (``vitcourse.distill``); the class token learns from the labels.

    In training the model returns both heads' logits, (class, distillation); in eval mode their
    average (timm's convention; the paper adds the two softmax outputs, which ranks the classes
    almost always the same way)."""
    num_tokens = 2

    def __init__(self, dim: int, num_classes: int):
        super().__init__(dim)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.head_dist = nn.Linear(dim, num_classes)

    def reset_parameters(self):
        for p in (self.cls_token, self.dist_token, self.head_dist.weight):
            nn.init.trunc_normal_(p, std=0.02)
        nn.init.zeros_(self.head_dist.bias)

    def reset_head(self, num_classes: int):
        self.head_dist = nn.Linear(self.head_dist.in_features, num_classes).to(self.dist_token.device)
        nn.init.zeros_(self.head_dist.weight)
        nn.init.zeros_(self.head_dist.bias)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "dist_token"}

    def forward(self, tokens):
        b = tokens.shape[0]
        return torch.cat([self.cls_token.expand(b, -1, -1), self.dist_token.expand(b, -1, -1), tokens], dim=1)

    def output(self, logits, tokens):
        dist = self.head_dist(tokens[:, 1])
        return (logits, dist) if self.training else (logits + dist) / 2


PREFIXES.register("cls", lambda c: ClassToken(c.dim))
PREFIXES.register("none", lambda c: NoPrefix())
PREFIXES.register("cls_dist", lambda c: DistillationTokens(c.dim, c.num_classes))
