"""Chapter 07's checked exercises: Swin's windows and their cost (Liu et al. 2021, section 3.2).

    from vitcourse.exercises import ch07
    ch07.window_partition.check(window_partition)
"""
from __future__ import annotations

import torch
from einops import rearrange

from ..models.swin import window_partition as _package_partition
from ._core import Case, Exercise, Mistake


# ---- reference solutions -------------------------------------------------------------------------------
def window_partition_solution(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, M*M, C): non-overlapping M x M windows, row-major over the image and
    inside each window (``vitcourse.models.swin.window_partition``)."""
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nh nw) (m1 m2) c", m1=window, m2=window)


def window_reverse_solution(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """The inverse of ``window_partition``: (B * nW, M*M, C) -> (B, H, W, C)."""
    return rearrange(windows, "(b nh nw) (m1 m2) c -> b (nh m1) (nw m2) c", nh=h // window, nw=w // window,
                     m1=window, m2=window)


def w_msa_flops_solution(h: int, w: int, c: int, window: int) -> int:
    """Multiply-adds of one W-MSA layer on an h x w map of width C, eq. (2): 4hwC^2 + 2M^2hwC."""
    return 4 * h * w * c * c + 2 * window * window * h * w * c


# ---- known mistakes ------------------------------------------------------------------------------------
def _windows_column_major(x, window):
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nw nh) (m1 m2) c", m1=window, m2=window)


def _transposed_inside(x, window):
    return rearrange(x, "b (nh m1) (nw m2) c -> (b nh nw) (m2 m1) c", m1=window, m2=window)


def _strided(x, window):
    # cuts every (H/M)-th pixel into one "window": a dilated grid, not a local window
    return rearrange(x, "b (m1 nh) (m2 nw) c -> (b nh nw) (m1 m2) c", m1=window, m2=window)


def _no_permute(x, window):
    b, h, w, c = x.shape
    return x.reshape(-1, window * window, c)


def _reverse_no_permute(windows, window, h, w):
    return windows.reshape(-1, h, w, windows.shape[-1])


def _reverse_column_major(windows, window, h, w):
    return rearrange(windows, "(b nw nh) (m1 m2) c -> b (nh m1) (nw m2) c", nh=h // window, nw=w // window,
                     m1=window, m2=window)


def _window_not_squared(h, w, c, window):
    return 4 * h * w * c * c + 2 * window * h * w * c


def _msa_flops(h, w, c, window):
    return 4 * h * w * c * c + 2 * (h * w) ** 2 * c


def _maps(b, h, w, c, seed):
    return torch.randn(b, h, w, c, generator=torch.Generator().manual_seed(seed))


def _describe(b, h, w, c, m):
    return f"batch {b}, {h}x{w} map of width {c}, window {m}"


def _partition_case(b, h, w, c, m, seed):
    return Case(_describe(b, h, w, c, m), lambda: (_maps(b, h, w, c, seed), m))


def _reverse_case(b, h, w, c, m, seed):
    return Case(_describe(b, h, w, c, m), lambda: (_package_partition(_maps(b, h, w, c, seed), m), m, h, w))


def _cost_case(h, w, c, m):
    return Case(f"h={h}, w={w}, C={c}, M={m}", lambda: (h, w, c, m))


_SIZES = ((2, 8, 8, 3, 4), (1, 12, 8, 5, 4), (3, 6, 6, 2, 3), (1, 7, 14, 4, 7))

window_partition = Exercise(
    "window_partition", window_partition_solution,
    cases=[_partition_case(*size, seed=k) for k, size in enumerate(_SIZES)],
    hints=["Name the pieces: H = (nh m1) and W = (nw m2), with m1 = m2 = M.",
           "The windows go into the batch dimension, image by image and row by row: (b nh nw).",
           "Inside a window the tokens are row-major: (m1 m2)."],
    mistakes=[Mistake(_windows_column_major, "the windows are ordered column by column (nw nh); the package and "
                                             "the mask of the shifted windows expect row-major windows (nh nw)."),
              Mistake(_transposed_inside, "the tokens inside each window are transposed (m2 m1): read each window "
                                          "row by row, (m1 m2)."),
              Mistake(_no_permute, "a plain reshape cuts consecutive pixels of a row into 'windows': the M x M "
                                   "window has to be gathered from M rows, which needs the axes reordered "
                                   "(rearrange, or view + permute) before flattening."),
              Mistake(_strided, "each 'window' takes every (H/M)-th pixel, a strided grid spread over the whole "
                                "image: write H as (nh m1), the window's pixels innermost, so that a window is M "
                                "neighbouring pixels.")],
    shape_formula="(B * (H/M) * (W/M), M * M, C)")

window_reverse = Exercise(
    "window_reverse", window_reverse_solution,
    cases=[_reverse_case(*size, seed=k) for k, size in enumerate(_SIZES)],
    hints=["It is window_partition's rearrange pattern read backwards.",
           "einops needs to be told nh = h // M and nw = w // M to split (b nh nw)."],
    mistakes=[Mistake(_reverse_column_major, "the windows are put back column by column (b nw nh): "
                                             "window_partition ordered them row by row (b nh nw)."),
              Mistake(_reverse_no_permute, "a plain reshape lays each window's M*M tokens along one row: undo "
                                           "window_partition's reordering of the axes (rearrange) first.")],
    shape_formula="(B, H, W, C)", grad=True)

w_msa_flops = Exercise(
    "w_msa_flops", w_msa_flops_solution,
    cases=[_cost_case(*size) for size in ((56, 56, 96, 7), (8, 8, 32, 4), (14, 28, 64, 7))],
    hints=["The projections (q, k, v and the output) cost 4hwC^2 whatever the attention's reach.",
           "Each of the hw queries meets the M^2 keys of its window only: QK^T and the weighted sum of V "
           "cost M^2 C each per query."],
    mistakes=[Mistake(_window_not_squared, "each query meets the M x M = M^2 keys of its window, not M."),
              Mistake(_msa_flops, "that is global MSA's cost, eq. (1): with windows each query meets M^2 keys, not "
                                  "all hw of them.")])

EXERCISES = [window_partition, window_reverse, w_msa_flops]
