"""Chapter 00's checked exercises: the arithmetic of convolutions and the ResNet's read-out.

    from vitcourse.exercises import ch00
    ch00.conv_output_size.check(conv_output_size)
"""
from __future__ import annotations

import torch

from ._core import Case, Exercise, Mistake


# ---- reference solutions -------------------------------------------------------------------------------
def conv_output_size_solution(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """The output side of a convolution (the formula of ``torch.nn.Conv2d``'s documentation):
    floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_parameters_solution(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> int:
    """Weights of a k x k convolution: one k x k x C_in filter per output channel, plus one bias each."""
    return out_channels * in_channels * kernel * kernel + (out_channels if bias else 0)


def global_average_pool_solution(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) feature maps -> (B, C): the mean of each channel over all positions."""
    return features.mean(dim=(-2, -1))


# ---- known mistakes ------------------------------------------------------------------------------------
def _no_dilation(size, kernel, stride=1, padding=0, dilation=1):
    return (size + 2 * padding - kernel) // stride + 1


def _padding_once(size, kernel, stride=1, padding=0, dilation=1):
    return (size + padding - dilation * (kernel - 1) - 1) // stride + 1


def _no_bias(in_channels, out_channels, kernel, bias=True):
    return out_channels * in_channels * kernel * kernel


def _no_input_channels(in_channels, out_channels, kernel, bias=True):
    return out_channels * kernel * kernel + (out_channels if bias else 0)


def _over_channels(features):
    return features.mean(dim=1)


def _sum_pool(features):
    return features.sum(dim=(-2, -1))


def _size_case(size, kernel, stride, padding, dilation):
    return Case(f"size={size}, kernel={kernel}, stride={stride}, padding={padding}, dilation={dilation}",
                lambda: (size, kernel, stride, padding, dilation))


def _param_case(c_in, c_out, k, bias):
    return Case(f"C_in={c_in}, C_out={c_out}, kernel={k}, bias={bias}", lambda: (c_in, c_out, k, bias))


def _map_case(b, c, h, w):
    return Case(f"batch {b}, {c} channels, {h}x{w}",
                lambda: (torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(c * h + w)),))


conv_output_size = Exercise(
    "conv_output_size", conv_output_size_solution,
    cases=[_size_case(*c) for c in ((32, 3, 1, 1, 1), (28, 3, 2, 1, 1), (224, 7, 2, 3, 1), (32, 3, 1, 2, 2),
                                    (7, 7, 1, 0, 1), (15, 4, 3, 0, 1))],
    hints=["Padding adds `padding` pixels on *both* sides.",
           "A dilated kernel spans dilation * (kernel - 1) + 1 pixels.",
           "The number of positions the kernel can take, stepping by `stride`, is floor(room / stride) + 1."],
    mistakes=[Mistake(_no_dilation, "dilation is missing: a kernel of k taps with dilation d spans d (k - 1) + 1 pixels."),
              Mistake(_padding_once, "the padding is counted once: it is added on both sides, 2 x padding.")])

conv_parameters = Exercise(
    "conv_parameters", conv_parameters_solution,
    cases=[_param_case(*c) for c in ((3, 16, 3, True), (16, 32, 3, False), (64, 64, 1, True), (1, 8, 5, True))],
    hints=["Each output channel has its own filter, which looks at every input channel.",
           "One bias per output channel, when bias=True."],
    mistakes=[Mistake(_no_bias, "the biases are missing: one per output channel when bias=True."),
              Mistake(_no_input_channels, "each filter is k x k x C_in: it spans all input channels.")])

global_average_pool = Exercise(
    "global_average_pool", global_average_pool_solution,
    cases=[_map_case(*c) for c in ((2, 8, 4, 4), (1, 3, 7, 5), (4, 16, 1, 1))],
    hints=["Average over the two spatial dimensions, keep batch and channel."],
    mistakes=[Mistake(_over_channels, "that averages over the channels (dim 1); the pool averages each channel over "
                                      "its H x W positions (dims -2 and -1)."),
              Mistake(_sum_pool, "that sums the positions; the pool takes their mean, so its scale does not depend "
                                 "on the image size.")],
    shape_formula="(B, C)", grad=True)

EXERCISES = [conv_output_size, conv_parameters, global_average_pool]
