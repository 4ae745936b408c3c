"""Chapter 06's checked exercises: SL-ViT's receptive field (Lee et al. 2021, eq. 1), its shifted
patches and the diagonal mask of Locality Self-Attention.

    from vitcourse.exercises import ch06
    ch06.token_receptive_field.check(token_receptive_field)
"""
from __future__ import annotations

import torch

from ..nn.slvit import DIAGONALS, shift_image
from ._core import Case, Exercise, Mistake


# ---- reference solutions -------------------------------------------------------------------------------
def token_receptive_field_solution(r_trans: int, j: int, k: int) -> int:
    """SL-ViT eq. 1: r_token = r_trans * j + (k - j), with j the tokenizer's stride and k its kernel."""
    return r_trans * j + (k - j)


def spt_shifts_solution(images: torch.Tensor, shift: int) -> torch.Tensor:
    """SPT's input: (B, C, H, W) -> (B, 5C, H, W), the images and their four diagonal shifts by ``shift``
    pixels (left-up, right-up, left-down, right-down; zeros fill in), concatenated along the channels."""
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (shift,) * 4)          # zeros around, then cut a shifted view
    views = [padded[..., shift + dy * shift:shift + dy * shift + h, shift + dx * shift:shift + dx * shift + w]
             for dx, dy in ((1, 1), (-1, 1), (1, -1), (-1, -1))]     # content moves left-up, right-up, ...
    return torch.cat([images] + views, dim=1)


def lsa_mask_solution(n: int) -> torch.Tensor:
    """LSA's diagonal masking: (n, n) bool, True where a token may attend, so everywhere but itself."""
    return ~torch.eye(n, dtype=torch.bool)


# ---- known mistakes ------------------------------------------------------------------------------------
def _no_overlap_term(r_trans, j, k):
    return r_trans * j


def _kernel_for_stride(r_trans, j, k):
    return r_trans * k + (k - j)


def _stride_kernel_swapped(r_trans, j, k):
    return r_trans * k + (j - k)


def _rolled(images, shift):
    return torch.cat([images] + [torch.roll(images, (dy * shift, dx * shift), dims=(-2, -1)) for dx, dy in DIAGONALS],
                     dim=1)


def _shifts_only(images, shift):
    return torch.cat([shift_image(images, dx * shift, dy * shift) for dx, dy in DIAGONALS], dim=1)


def _identity_only(n):
    return torch.eye(n, dtype=torch.bool)


def _field_case(r, j, k):
    return Case(f"r_trans={r}, j={j}, k={k}", lambda: (r, j, k))


def _image_case(b, c, h, s):
    return Case(f"batch {b}, {c}x{h}x{h}, shift {s}",
                lambda: (torch.randn(b, c, h, h, generator=torch.Generator().manual_seed(h)), s))


token_receptive_field = Exercise(
    "token_receptive_field", token_receptive_field_solution,
    # r_trans != 1 first: there the known mistakes all give different answers
    cases=[_field_case(*c) for c in ((3, 2, 3), (1, 4, 4), (1, 4, 8), (5, 16, 16), (2, 3, 5))],
    hints=["One step of stride j in the token grid moves j units of the layer below, each seeing r_trans pixels.",
           "The kernel reaches k - j units beyond what the stride alone covers."],
    mistakes=[Mistake(_no_overlap_term, "the (k - j) term is missing: a kernel wider than its stride sees k - j more."),
              Mistake(_kernel_for_stride, "r_trans is multiplied by the kernel k; it is the stride j that scales it."),
              Mistake(_stride_kernel_swapped, "j and k are swapped: this exercise takes (r_trans, j, k) with j the "
                                              "stride and k the kernel, as SL-ViT's eq. 1 names them (the package's "
                                              "token_receptive_field takes (r_trans, kernel, stride)).")])

spt_shifts = Exercise(
    "spt_shifts", spt_shifts_solution,
    cases=[_image_case(*c) for c in ((2, 1, 8, 2), (1, 3, 6, 1), (2, 2, 12, 3))],
    hints=["vitcourse.nn.slvit.shift_image(x, dx, dy) translates with zeros filling in.",
           "The four directions are (dx, dy) = (-1, -1), (1, -1), (-1, 1), (1, 1) times the shift, in that order.",
           "Keep the original images first: 5C channels in all."],
    mistakes=[Mistake(_rolled, "torch.roll wraps the border around to the other side; SPT translates with zeros "
                               "filling in."),
              Mistake(_shifts_only, "the original images are missing: SPT concatenates the image with its four shifts.")],
    shape_formula="(B, 5C, H, W)", grad=True)

lsa_mask = Exercise(
    "lsa_mask", lsa_mask_solution,
    cases=[Case(f"n={n}", (lambda n=n: (n,))) for n in (4, 1, 50)],
    hints=["Diagonal masking removes each token's attention to itself and nothing else."],
    mistakes=[Mistake(_identity_only, "that allows only the diagonal: LSA blocks the diagonal and allows the rest.")],
    shape_formula="(n, n)")

EXERCISES = [token_receptive_field, spt_shifts, lsa_mask]
