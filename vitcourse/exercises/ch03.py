"""Chapter 03's checked exercises: the ViT's input steps (ViT paper, section 3.1, eq. 1).

    from vitcourse.exercises import ch03
    ch03.num_patches.check(num_patches)
"""
from __future__ import annotations

import torch
from einops import rearrange

from ._core import Case, Exercise, Mistake, seeded as _seeded


# ---- reference solutions -------------------------------------------------------------------------------
def num_patches_solution(image_size: int, patch_size: int) -> int:
    """N = HW / P^2 for a square image of side ``image_size``."""
    return (image_size // patch_size) ** 2


def patchify_solution(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C): the patches in row-major order, each flattened pixel by pixel
    with the channels last (the order of ``vitcourse.models.vit.patchify``)."""
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)


def prepend_class_token_solution(tokens: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
    """(B, N, D) patch embeddings and a (1, 1, D) class token -> (B, N + 1, D), the class token first."""
    return torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)


def tokens_at_384_solution() -> int:
    """ViT-B/16 fine-tuned at 384 x 384 px (ViT section 3.2): (384 / 16)^2 = 576 patches, plus the class token."""
    return (384 // 16) ** 2 + 1


# ---- known mistakes ------------------------------------------------------------------------------------
def _patches_per_side(image_size, patch_size):
    return image_size // patch_size


def _channels_first(images, patch_size):
    return rearrange(images, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=patch_size, p2=patch_size)


def _column_major(images, patch_size):
    return rearrange(images, "b c (h p1) (w p2) -> b (w h) (p1 p2 c)", p1=patch_size, p2=patch_size)


def _no_class_token():
    return (384 // 16) ** 2


def _not_expanded(tokens, cls_token):
    return torch.cat([cls_token, tokens], dim=1)


def _appended(tokens, cls_token):
    return torch.cat([tokens, cls_token.expand(tokens.shape[0], -1, -1)], dim=1)



def _size_case(s, p):
    return Case(f"image_size={s}, patch_size={p}", lambda: (s, p))


def _image_case(b, c, h, w, p, seed):
    return Case(f"{b} image(s) of {c}x{h}x{w}, patch_size={p}", lambda: (_seeded(b, c, h, w, seed=seed), p))


def _token_case(b, n, d):
    return Case(f"batch {b}, {n} tokens of width {d}", lambda: (_seeded(b, n, d, seed=n), _seeded(1, 1, d, seed=d)))


num_patches = Exercise(
    "num_patches", num_patches_solution,
    cases=[_size_case(s, p) for s, p in ((224, 16), (224, 32), (28, 4), (32, 4), (384, 16))],
    hints=["N counts every patch of the grid, not one row of it.",
           "A side of H pixels holds H // P patches; the grid is square."],
    mistakes=[Mistake(_patches_per_side, "that is the number of patches along one side; the grid has "
                                         "(H/P) x (W/P) patches.")])

patchify = Exercise(
    "patchify", patchify_solution,
    cases=[_image_case(*size, seed=seed) for seed, size in
           enumerate(((2, 3, 8, 8, 4), (1, 1, 28, 28, 4), (3, 3, 32, 32, 8), (2, 3, 8, 12, 4), (2, 2, 12, 6, 3)))],
    hints=["Cut H into (H/P) rows of P pixels and W into (W/P) columns: einops' rearrange with "
           "'b c (h p1) (w p2) -> ...' names those pieces.",
           "Patches go top-left to bottom-right, row by row: the patch index is (h w), rows outer.",
           "Inside a patch the order is pixel row, pixel column, then channel: (p1 p2 c)."],
    mistakes=[Mistake(_channels_first, "each patch is flattened channel first (c p1 p2); the course, like the original "
                                       "JAX ViT and vit-pytorch, puts the channels last: (p1 p2 c). (PyTorch's "
                                       "conv weights flatten channel first, which is why "
                                       "LinearPatchEmbedding.from_conv rearranges them.)"),
              Mistake(_column_major, "the patches are in column-major order (w h): the sequence must go along the "
                                     "first row of patches first, (h w).")],
    shape_formula="(B, (H/P) * (W/P), P * P * C)")

prepend_class_token = Exercise(
    "prepend_class_token", prepend_class_token_solution,
    cases=[_token_case(b, n, d) for b, n, d in ((2, 4, 8), (1, 49, 64), (3, 1, 5))],
    hints=["The class token is one vector shared by every image: expand it to the batch first.",
           "torch.cat along the token dimension (dim=1), the class token in front."],
    mistakes=[Mistake(_appended, "the class token is at the end; eq. 1 puts x_class first (index 0), where the "
                                 "head reads it."),
              Mistake(_not_expanded, "the (1, 1, D) class token must be copied for every image of the batch first: "
                                     "cls_token.expand(B, -1, -1), then concatenate.")],
    shape_formula="(B, N + 1, D)", grad=True)

tokens_at_384 = Exercise(
    "tokens_at_384", tokens_at_384_solution,
    cases=[Case("ViT-B/16 at 384 px", lambda: ())],
    hints=["The patch size stays 16 when the resolution grows: count the patches of a 384 px side.",
           "The Transformer's sequence also holds the class token."],
    mistakes=[Mistake(_no_class_token, "that counts the patches only; the sequence also holds the class token.")])

EXERCISES = [num_patches, patchify, prepend_class_token, tokens_at_384]
