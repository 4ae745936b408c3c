"""Attention: the seed-003 worked example, torch parity, masks, the two paths of MultiHeadAttention."""
import math

import pytest
import torch

from vitcourse.nn import (AdditiveAttention, MultiHeadAttention, causal_mask, dot_product_attention,
                          padding_mask)

# Seed 003: the decoder state g^5 is the query; the five encoder states h^1..h^5 are keys and values.
Q = torch.tensor([[0.2, 0.9, 0.0]])
K = torch.tensor([[0.1, 0.0, 0.8], [0.1, 0.9, 0.0], [0.0, 0.1, 0.8], [0.2, 0.1, 0.6], [0.9, 0.0, 0.1]])


def test_seed_003_worked_example_to_three_decimals():
    c, w = dot_product_attention(Q, K, K, scale=1.0)
    assert torch.allclose(w, torch.tensor([[0.151, 0.340, 0.162, 0.169, 0.178]]), atol=5e-4)
    assert torch.allclose(c, torch.tensor([[0.243, 0.339, 0.370]]), atol=5e-4)
    assert torch.allclose(w.sum(-1), torch.ones(1))


def test_default_scale_is_one_over_sqrt_dk():
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 5)
    c, w = dot_product_attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    assert torch.allclose(w, expected, atol=1e-6)
    assert torch.allclose(c, expected @ v, atol=1e-6)


def test_padded_positions_get_zero_weight():
    lengths = torch.tensor([5, 2, 4])
    mask = padding_mask(lengths)
    assert mask.tolist()[1] == [True, True, False, False, False]
    q, k = torch.randn(3, 4, 8), torch.randn(3, 5, 8)
    _, w = dot_product_attention(q, k, k, mask=mask[:, None, :])
    for b, n in enumerate(lengths.tolist()):
        assert (w[b, :, n:] == 0).all()
        assert torch.allclose(w[b].sum(-1), torch.ones(4))


def test_fully_masked_rows_are_zero_not_nan():
    q = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of batch 0 may attend nowhere
    c, w = dot_product_attention(q, q, q, mask=mask)
    assert not torch.isnan(w).any() and not torch.isnan(c).any()
    assert (w[0, 1] == 0).all() and (c[0, 1] == 0).all()
    c.sum().backward()
    assert torch.isfinite(q.grad).all()
    mha = MultiHeadAttention(4, 2)
    for need_weights in (False, True):
        out, _ = mha(q.detach(), mask=mask[:, None], need_weights=need_weights)
        assert torch.isfinite(out).all()


def _copy_into_torch(ours: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(ours.dim, ours.num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    return ref.eval()


@pytest.mark.parametrize("need_weights", [False, True])
def test_multi_head_attention_equals_torch_with_padding_and_causal_masks(need_weights):
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4).eval()
    ref = _copy_into_torch(mha)
    x = torch.randn(3, 7, 32)
    lengths = torch.tensor([7, 4, 6])
    keep = padding_mask(lengths, 7)
    causal = causal_mask(7)
    # Ours: True = may attend. torch's masks: True = may NOT attend.
    ours, w = mha(x, mask=keep[:, None, None, :] & causal, need_weights=need_weights)
    theirs, w_ref = ref(x, x, x, key_padding_mask=~keep, attn_mask=~causal, average_attn_weights=False)
    assert torch.allclose(ours, theirs, atol=1e-5)
    if need_weights:
        assert torch.allclose(w, w_ref, atol=1e-5)


def test_cross_attention_equals_torch():
    torch.manual_seed(1)
    mha = MultiHeadAttention(16, 2).eval()
    ref = _copy_into_torch(mha)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    keep = padding_mask(torch.tensor([9, 3]), 9)
    ours, _ = mha(x, context=mem, mask=keep[:, None, None, :])
    theirs, _ = ref(x, mem, mem, key_padding_mask=~keep)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_fast_path_equals_weights_path():
    torch.manual_seed(2)
    mha = MultiHeadAttention(24, 3)
    x = torch.randn(2, 6, 24)
    mask = padding_mask(torch.tensor([6, 3]), 6)[:, None, None, :] & causal_mask(6)
    fast, none = mha(x, mask=mask)
    slow, w = mha(x, mask=mask, need_weights=True)
    assert none is None and w.shape == (2, 3, 6, 6)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_causal_mask_blocks_gradient_from_the_future():
    torch.manual_seed(3)
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(1, 6, 16, requires_grad=True)
    for need_weights in (False, True):
        for t in range(6):
            out, _ = mha(x, mask=causal_mask(6), need_weights=need_weights)
            (g,) = torch.autograd.grad(out[0, t].sum(), x)
            assert (g[0, t + 1:] == 0).all()          # position t never reads a later input
            assert (g[0, : t + 1].abs().sum(-1) > 0).all()  # ...but does read every earlier one


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4)


def test_additive_attention_formula_and_padding():
    torch.manual_seed(4)
    attn = AdditiveAttention(query_dim=6, key_dim=10, attn_dim=8)
    s, h = torch.randn(3, 6), torch.randn(3, 5, 10)
    lengths = torch.tensor([5, 3, 1])
    c, alpha = attn(s, h, mask=padding_mask(lengths))
    # e_ij = v^T tanh(W s_{i-1} + U h_j), written out for one row
    e = torch.stack([attn.v(torch.tanh(attn.W(s[0]) + attn.U(h[0, j]))).squeeze() for j in range(5)])
    assert torch.allclose(alpha[0], torch.softmax(e, 0), atol=1e-6)
    assert torch.allclose(c, torch.einsum("bm,bmd->bd", alpha, h), atol=1e-6)
    for b, n in enumerate(lengths.tolist()):
        assert (alpha[b, n:] == 0).all() and torch.isclose(alpha[b].sum(), torch.tensor(1.0))
    c, alpha = attn(s, h, mask=torch.zeros(3, 5, dtype=torch.bool))
    assert not torch.isnan(alpha).any() and (c == 0).all()


@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("scale_kind", ["default", "float", "scalar_tensor", "per_head"])
def test_bias_and_scale_give_the_same_output_on_both_paths(with_mask, scale_kind):
    torch.manual_seed(0)
    b, h, n, dim = 2, 4, 6, 16
    mha = MultiHeadAttention(dim, h).eval()
    x = torch.randn(b, n, dim)
    bias = torch.randn(h, n, n)  # e.g. Swin's relative position bias: one (n, n) table per head
    scale = {"default": None, "float": 0.7, "scalar_tensor": torch.tensor(0.3, requires_grad=True),
             "per_head": torch.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)}[scale_kind]
    mask = None
    if with_mask:
        mask = torch.rand(b, 1, n, n) > 0.3
        mask[0, 0, 2] = False  # a query with nowhere to look
    fast, _ = mha(x, mask=mask, bias=bias, scale=scale)
    slow, weights = mha(x, mask=mask, bias=bias, scale=scale, need_weights=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(fast).all()
    # The weights are softmax(q k^T * scale + bias) over the allowed keys, written out by hand.
    q, k, _ = mha._project(x, None)
    s = {"default": 1 / math.sqrt(dim // h), "float": 0.7}.get(scale_kind)
    if s is None:
        s = scale.detach().reshape(-1, 1, 1) if scale.numel() > 1 else scale.detach()
    scores = q @ k.transpose(-1, -2) * s + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    expected = torch.softmax(scores, -1).nan_to_num(0.0)
    torch.testing.assert_close(weights, expected, atol=1e-5, rtol=1e-5)
    if torch.is_tensor(scale):  # a learnable temperature gets a gradient through the fused path
        fast.sum().backward()
        assert scale.grad is not None and torch.isfinite(scale.grad).all() and scale.grad.abs().sum() > 0


def test_a_bias_of_minus_infinity_is_a_mask():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).eval()
    x = torch.randn(1, 5, 8)
    allowed = torch.rand(5, 5) > 0.4
    allowed |= torch.eye(5, dtype=torch.bool)
    as_bias = torch.zeros(5, 5).masked_fill(~allowed, float("-inf"))
    torch.testing.assert_close(mha(x, bias=as_bias)[0], mha(x, mask=allowed)[0], atol=1e-6, rtol=1e-6)


def test_per_head_scale_needs_one_value_per_head():
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="one per head"):
        mha(torch.randn(1, 3, 8), scale=torch.ones(3))
