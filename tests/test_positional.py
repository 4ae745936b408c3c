"""Positional encodings: the sinusoidal formula of "Attention is all you need" and the learned table."""
import math

import pytest
import torch

from vitcourse.nn import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_table


def test_sinusoidal_table_matches_the_formula():
    n, d = 50, 16
    table = sinusoidal_table(n, d)
    assert table.shape == (n, d)
    for pos in range(n):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_dot_product_depends_only_on_the_offset():
    # PE(p) . PE(p+k) = sum_i cos(k w_i): relative position is a fixed function of the two codes.
    table = sinusoidal_table(100, 32)
    for k in (1, 5, 17):
        dots = (table[:-k] * table[k:]).sum(-1)
        assert torch.allclose(dots, dots[0].expand_as(dots), atol=1e-4)


def test_odd_width_is_rejected():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_table(10, 7)


def test_modules_add_positions_and_check_length():
    x = torch.zeros(2, 5, 8)
    sin = SinusoidalPositionalEncoding(8, max_len=10)
    assert torch.allclose(sin(x), sinusoidal_table(5, 8).expand(2, 5, 8))
    assert torch.allclose(sin(x, offset=3)[0, 0], sinusoidal_table(10, 8)[3])
    assert not list(sin.parameters())
    learned = LearnedPositionalEmbedding(8, max_len=5)
    assert torch.equal(learned(x)[1], learned.weight)
    assert sum(p.numel() for p in learned.parameters()) == 40
    with pytest.raises(ValueError, match="max_len"):
        learned(torch.zeros(1, 6, 8))
    with pytest.raises(ValueError, match="max_len"):
        sin(torch.zeros(1, 11, 8))
