"""Chapter 02's checked exercises: scaled dot-product attention, its causal mask, and the sinusoidal
position encoding (Vaswani et al. 2017, eq. 1 and section 3.5).

    from vitcourse.exercises import ch02
    ch02.causal_mask.check(causal_mask)
"""
from __future__ import annotations

import math

import torch

from ..nn.attention import causal_mask as _package_causal_mask
from ..nn.positional import sinusoidal_table
from ._core import Case, Exercise, Mistake, seeded as _seeded


# ---- reference solutions -------------------------------------------------------------------------------
def causal_mask_solution(n: int) -> torch.Tensor:
    """(n, n) bool, True where query i may attend to key j: j <= i (``vitcourse.nn.attention.causal_mask``)."""
    return torch.ones(n, n, dtype=torch.bool).tril()


def scaled_dot_product_solution(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v with ``mask`` True where a query may attend (the package's and
    ``F.scaled_dot_product_attention``'s convention) -> (out, weights)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def sinusoidal_encoding_solution(num_positions: int, dim: int) -> torch.Tensor:
    """(num_positions, dim): PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)     # 1 / 10000^(2i/d)
    table = torch.zeros(num_positions, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return table.float()


# ---- known mistakes ------------------------------------------------------------------------------------
def _upper(n):
    return torch.ones(n, n, dtype=torch.bool).triu()


def _strict(n):
    return torch.ones(n, n, dtype=torch.bool).tril(-1)


def _attend(q, k, v, mask, scale, dim=-1, invert=False):
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if invert else ~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim).nan_to_num(0.0)
    return weights @ v, weights


def _unscaled(q, k, v, mask=None):
    return _attend(q, k, v, mask, 1.0)


def _over_d_k(q, k, v, mask=None):
    return _attend(q, k, v, mask, 1 / q.shape[-1])


def _wrong_axis(q, k, v, mask=None):
    return _attend(q, k, v, mask, 1 / math.sqrt(q.shape[-1]), dim=-2)


def _inverted_mask(q, k, v, mask=None):
    return _attend(q, k, v, mask, 1 / math.sqrt(q.shape[-1]), invert=True)


def _sin_cos_swapped(num_positions, dim):
    table = sinusoidal_table(num_positions, dim)
    return torch.stack([table[:, 1::2], table[:, 0::2]], dim=-1).reshape(num_positions, dim)


def _halves(num_positions, dim):
    table = sinusoidal_table(num_positions, dim)
    return torch.cat([table[:, 0::2], table[:, 1::2]], dim=-1)


def _exponent_i(num_positions, dim):
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float64) / dim)
    return torch.stack([torch.sin(pos * freq), torch.cos(pos * freq)], dim=-1).reshape(num_positions, dim).float()



def _n_case(n):
    return Case(f"n={n}", lambda: (n,))


def _attention_case(b, n, m, d, masked):
    def make():
        mask = _package_causal_mask(n)[:, :m] if masked else None
        return _seeded(b, n, d, seed=1), _seeded(b, m, d, seed=2), _seeded(b, m, d + 1, seed=3), mask
    return Case(f"batch {b}, {n} queries, {m} keys, d_k={d}" + (", causal mask" if masked else ", no mask"), make)


def _table_case(n, d):
    return Case(f"num_positions={n}, dim={d}", lambda: (n, d))


causal_mask = Exercise(
    "causal_mask", causal_mask_solution,
    cases=[_n_case(n) for n in (4, 1, 7)],
    hints=["Query i (a row) may see keys 0 .. i (the columns up to and including the diagonal).",
           "torch.ones(n, n, dtype=torch.bool).tril() keeps the lower triangle."],
    mistakes=[Mistake(_upper, "that is the upper triangle: it lets every query see the future and hides the past."),
              Mistake(_strict, "the diagonal is blocked: a token may attend to itself (j <= i, not j < i).")],
    shape_formula="(n, n)")

scaled_dot_product = Exercise(
    "scaled_dot_product", scaled_dot_product_solution,
    cases=[_attention_case(*c) for c in ((2, 4, 4, 8, False), (1, 1, 1, 3, False), (2, 5, 5, 4, True),
                                         (3, 3, 6, 16, False))],
    hints=["scores = q @ k.transpose(-2, -1) / sqrt(d_k), d_k = q.shape[-1].",
           "Where mask is False the score becomes -inf (masked_fill with ~mask), before the softmax.",
           "The softmax runs over the keys, the last dimension: each query's weights sum to 1."],
    mistakes=[Mistake(_unscaled, "the 1/sqrt(d_k) scale is missing: without it the scores grow with d_k and the "
                                 "softmax saturates."),
              Mistake(_over_d_k, "the scores are divided by d_k; the scale is 1/sqrt(d_k), which keeps the scores' "
                                 "variance near 1 when q and k have unit variance."),
              Mistake(_wrong_axis, "the softmax runs over the queries (dim -2): each query's weights must sum to 1 "
                                   "over the keys (dim -1)."),
              Mistake(_inverted_mask, "the mask is inverted: True means 'may attend', so fill the scores where "
                                      "the mask is False (~mask).")],
    shape_formula="(..., n, d_v); (..., n, m)", grad=True)

sinusoidal_encoding = Exercise(
    "sinusoidal_encoding", sinusoidal_encoding_solution,
    cases=[_table_case(*c) for c in ((10, 8), (1, 2), (50, 16))],
    hints=["Channel pair i (channels 2i and 2i+1) shares the frequency 1 / 10000^(2i/d).",
           "Even channels hold the sine, odd channels the cosine."],
    mistakes=[Mistake(_sin_cos_swapped, "sine and cosine are swapped: PE(pos, 2i) is the sine, PE(pos, 2i + 1) the "
                                        "cosine."),
              Mistake(_halves, "all the sines come first and then all the cosines; the table interleaves them: "
                               "channel 2i holds the sine and channel 2i + 1 the cosine of the same frequency."),
              Mistake(_exponent_i, "the exponent uses i instead of 2i: the frequency of pair i is 1 / 10000^(2i/d).")],
    shape_formula="(num_positions, dim)", atol=1e-4)

EXERCISES = [causal_mask, scaled_dot_product, sinusoidal_encoding]
