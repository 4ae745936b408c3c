"""The hybrid ViT (Dosovitskiy et al. 2021, section 3.1, "Hybrid Architecture"): the input sequence is
cut from a CNN feature map instead of from raw pixels. The early stages of a ResNet turn the image into
a (C, H/s, W/s) feature map; each position of it (a 1x1 "patch") is projected to the width D and
becomes one token. Everything after the tokens is the plain ViT.

The paper's hybrids put the first stages of a ResNet-50 in front of ViT-B (R50+ViT-B/16); AugReg's
R+Ti and R26 are smaller ones. Here the CNN is chapter 00's CIFAR ResNet: a 3x3 stem and one stage
per width, each later stage halving the resolution, so three stages give stride s = 4. The config's
``patch_size`` is the number of image pixels per token side: s for 1x1 patches of the feature map,
or a multiple of s for p x p patches of it.
"""
from __future__ import annotations

import torch.nn as nn
from einops import rearrange

from .parts import TOKENIZERS
from .resnet import kaiming_init, resnet_body


class ResNetTokenizer(nn.Module):
    """Image (B, C, H, W) -> CNN feature map (B, C', H/s, W/s) -> tokens (B, N, D), N = HW / patch_size^2.

    ``blocks`` basic blocks per stage, stage ``widths`` (their number sets the stride s = 2^(stages-1)).
    The CNN keeps its own initialisation (Kaiming, bias-free convolutions, batch norm); the projection
    of the feature-map patches gets the ViT's truncated-normal(0.02), like a plain patch embedding.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int, blocks: int = 1, widths=(16, 32, 64)):
        super().__init__()
        self.stride = 2 ** (len(widths) - 1)
        if patch_size % self.stride != 0:
            raise ValueError(
                f"a hybrid with {len(widths)} ResNet stages has stride {self.stride}, so each token covers a "
                f"multiple of {self.stride} pixels: patch_size={patch_size} is not one. Use patch_size="
                f"{self.stride} (1x1 patches of the feature map) or {2 * self.stride}, or change the stages.")
        self.patch_size = patch_size
        self.stem, self.stages = resnet_body(blocks, in_channels, tuple(widths))
        k = patch_size // self.stride                       # patch side on the feature map (1: 1x1)
        self.proj = nn.Conv2d(widths[-1], dim, kernel_size=k, stride=k)
        self.reset_parameters()

    def reset_parameters(self):
        kaiming_init(self.stem)
        kaiming_init(self.stages)
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def features(self, x):
        """The CNN feature map (B, C', H/s, W/s) that the tokens are cut from."""
        return self.stages(self.stem(x))

    def forward(self, x):
        return rearrange(self.proj(self.features(x)), "b d h w -> b (h w) d")


TOKENIZERS.register("resnet", lambda c: ResNetTokenizer(c.in_channels, c.dim, c.patch_size, **c.tokenizer_args))
