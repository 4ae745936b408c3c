"""Chapter 01's checked exercises: Bahdanau attention (Bahdanau et al. 2015, eq. 5-6) and its masks.

    from vitcourse.exercises import ch01
    ch01.additive_attention.check(additive_attention)
"""
from __future__ import annotations

import torch

from ._core import Case, Exercise, Mistake, seeded as _seeded


# ---- reference solutions -------------------------------------------------------------------------------
def additive_attention_solution(query, keys, W_q, W_k, v):
    """e_j = v . tanh(W_q query + W_k key_j); weights = softmax over j; context = sum_j weights_j key_j.
    query (B, Dq), keys (B, T, Dk), W_q (A, Dq), W_k (A, Dk), v (A,) -> context (B, Dk), weights (B, T)."""
    energies = torch.tanh((query @ W_q.T)[:, None, :] + keys @ W_k.T) @ v       # (B, T)
    weights = torch.softmax(energies, dim=-1)
    return torch.einsum("bt,btd->bd", weights, keys), weights


def padding_mask_solution(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) sequence lengths -> (B, max_len) bool, True on real tokens (position < length)."""
    return torch.arange(max_len)[None, :] < lengths[:, None]


def masked_softmax_solution(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension with the positions where ``mask`` is False given weight exactly 0
    (and the rest renormalised): the scores there become -inf before the softmax."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


# ---- known mistakes ------------------------------------------------------------------------------------
def _softmax_over_batch(query, keys, W_q, W_k, v):
    energies = torch.tanh((query @ W_q.T)[:, None, :] + keys @ W_k.T) @ v
    weights = torch.softmax(energies, dim=0)
    return torch.einsum("bt,btd->bd", weights, keys), weights


def _no_tanh(query, keys, W_q, W_k, v):
    energies = ((query @ W_q.T)[:, None, :] + keys @ W_k.T) @ v
    weights = torch.softmax(energies, dim=-1)
    return torch.einsum("bt,btd->bd", weights, keys), weights


def _untransposed(query, keys, W_q, W_k, v):
    energies = torch.tanh((query @ W_q)[:, None, :] + keys @ W_k) @ v
    weights = torch.softmax(energies, dim=-1)
    return torch.einsum("bt,btd->bd", weights, keys), weights


def _less_or_equal(lengths, max_len):
    return torch.arange(max_len)[None, :] <= lengths[:, None]


def _inverted_padding(lengths, max_len):
    return torch.arange(max_len)[None, :] >= lengths[:, None]


def _zeroed_after(scores, mask):
    return torch.softmax(scores, dim=-1) * mask



def _attention_case(b, t, dq, dk, a):
    return Case(f"batch {b}, {t} keys, Dq={dq}, Dk={dk}, A={a}",
                lambda: (_seeded(b, dq, seed=1), _seeded(b, t, dk, seed=2), _seeded(a, dq, seed=3),
                         _seeded(a, dk, seed=4), _seeded(a, seed=5)))


def _lengths_case(lengths, max_len):
    return Case(f"lengths {lengths}, max_len={max_len}", lambda: (torch.tensor(lengths), max_len))


def _scores_case(b, n, lengths):
    return Case(f"batch {b}, {n} keys, lengths {lengths}",
                lambda: (_seeded(b, n, seed=n), torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]))


additive_attention = Exercise(
    "additive_attention", additive_attention_solution,
    cases=[_attention_case(*c) for c in ((2, 5, 3, 4, 6), (1, 1, 2, 2, 3), (3, 7, 5, 3, 4))],
    hints=["W_q query is (B, A); W_k key_j for all j at once is keys @ W_k.T, (B, T, A).",
           "Add the two (broadcast the query's over T), tanh, then the dot product with v gives (B, T) energies.",
           "The softmax runs over the keys (the last dimension); the context weights the keys themselves."],
    mistakes=[Mistake(_softmax_over_batch, "the softmax runs over the batch (dim 0): each example's weights must sum "
                                           "to 1 over its own T keys (dim -1)."),
              Mistake(_no_tanh, "the tanh is missing: the score is a one-hidden-layer MLP, v . tanh(...)."),
              Mistake(_untransposed, "W_q and W_k are (A, D): apply them as query @ W_q.T and keys @ W_k.T.")],
    shape_formula="(B, Dk); (B, T)", grad=True)

padding_mask = Exercise(
    "padding_mask", padding_mask_solution,
    cases=[_lengths_case(*c) for c in (([3, 1, 4], 4), ([1], 1), ([2, 5], 6))],
    hints=["Compare the positions 0 .. max_len - 1 with each length, broadcasting (1, max_len) against (B, 1)."],
    mistakes=[Mistake(_less_or_equal, "position == length is already padding: a sequence of length L has "
                                      "positions 0 .. L - 1, so use <."),
              Mistake(_inverted_padding, "the mask is inverted: True marks the real tokens (position < length), "
                                         "False the padding.")],
    shape_formula="(B, max_len)", mask_words=("sequence", "position", "True marks a real token, False padding"))

masked_softmax = Exercise(
    "masked_softmax", masked_softmax_solution,
    cases=[_scores_case(*c) for c in ((2, 4, [4, 2]), (1, 3, [1]), (3, 6, [6, 3, 5]))],
    hints=["Masked positions must get weight 0 *and* the others must still sum to 1.",
           "Set the masked scores to -inf before the softmax (masked_fill with ~mask)."],
    mistakes=[Mistake(_zeroed_after, "the weights are zeroed after the softmax, so the rest no longer sum to 1: "
                                     "mask the scores with -inf before the softmax.")],
    shape_formula="(B, T)", grad=True)

EXERCISES = [additive_attention, padding_mask, masked_softmax]
