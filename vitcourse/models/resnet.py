"""The CIFAR-style ResNet of He et al. (2016, section 4.2): the course's CNN baseline and DeiT teacher.

Three stages of basic blocks at widths 16, 32, 64 (times ``width``), each stage halving the
resolution; depth 6n+2 (resnet20: n=3). ``residual=False`` drops every shortcut, giving the "plain"
network of the paper, which chapter 00 uses to show why F(x) + x keeps gradients alive.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from einops.layers.torch import Reduce

from .registry import register_model


class BasicBlock(nn.Module):
    """y = ReLU(F(x) + shortcut(x)),  F = conv3x3-BN-ReLU-conv3x3-BN  (He et al. 2016, eq. 1-2).

    When the stride or width changes, the shortcut is a 1x1 convolution + BN (projection, "option B").
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, residual: bool = True):
        super().__init__()
        self.residual = residual
        self.f = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.shortcut = nn.Identity()
        if residual and (stride != 1 or in_ch != out_ch):
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.f(x)
        if self.residual:
            out = out + self.shortcut(x)
        return torch.relu(out)


def resnet_body(blocks: int, in_channels: int, widths=(16, 32, 64), residual: bool = True):
    """(stem, stages) of the CIFAR ResNet: a 3x3 convolution, then one stage per width, each of
    ``blocks`` basic blocks; every stage after the first halves the resolution. The ResNet below and
    the hybrid ViT's CNN tokenizer (``vitcourse.models.hybrid``) are both built from it."""
    stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                         nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    stages, ch = [], widths[0]
    for i, w in enumerate(widths):
        layers = []
        for j in range(blocks):
            layers.append(BasicBlock(ch, w, stride=2 if (i > 0 and j == 0) else 1, residual=residual))
            ch = w
        stages.append(nn.Sequential(*layers))
    return stem, nn.Sequential(*stages)


def kaiming_init(module: nn.Module) -> None:
    """He et al. (2015) initialisation of every convolution (fan-out, ReLU gain); BatchNorm to 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


class ResNet(nn.Module):
    """stem conv3x3 -> 3 stages of ``blocks`` basic blocks -> global average pool -> linear."""

    def __init__(self, blocks: int = 3, num_classes: int = 10, in_channels: int = 3,
                 widths=(16, 32, 64), residual: bool = True):
        super().__init__()
        self.config = dict(blocks=blocks, num_classes=num_classes, in_channels=in_channels,
                           widths=list(widths), residual=residual)
        self.stem, self.stages = resnet_body(blocks, in_channels, widths, residual)
        self.head = nn.Sequential(Reduce("b c h w -> b c", "mean"), nn.Linear(widths[-1], num_classes))
        kaiming_init(self)

    def features(self, x):
        """The last stage's feature map (B, C, H/4, W/4), e.g. for a hybrid ViT stem."""
        return self.stages(self.stem(x))

    def forward(self, x):
        return self.head(self.features(x))


def _builder(blocks: int, width: int = 1, residual: bool = True):
    def build(num_classes: int = 10, in_channels: int = 3, image_size: int | None = None, **kw):
        kw.setdefault("widths", tuple(width * w for w in (16, 32, 64)))
        kw.setdefault("residual", residual)
        return ResNet(blocks, num_classes, in_channels, **kw)
    build.__doc__ = f"ResNet-{6 * blocks + 2} ({'residual' if residual else 'plain'}, width x{width})."
    return build


for _blocks in (1, 3, 5, 9, 18):                 # resnet8, 20, 32, 56, 110 (He et al. table 6)
    register_model(f"resnet{6 * _blocks + 2}", _builder(_blocks))
    register_model(f"plain{6 * _blocks + 2}", _builder(_blocks, residual=False))
register_model("resnet8_w2", _builder(1, width=2))
register_model("resnet20_w2", _builder(3, width=2))
