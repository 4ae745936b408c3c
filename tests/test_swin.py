"""Swin: windows, the cyclic shift and its mask, relative position bias, patch merging, torchvision parity."""
import pytest
import torch
import torchvision

from vitcourse.models import create_model
from vitcourse.models.convert import swin_from_torchvision
from vitcourse.models.swin import (PatchMerging, SwinConfig, SwinTransformer, WindowAttention, relative_position_index,
                                   shift_attention_mask, shift_regions, window_partition, window_reverse)


def test_swin_t_parameter_count_is_torchvisions():
    with torch.device("meta"):
        assert sum(p.numel() for p in create_model("swin_t").parameters()) == 28_288_354


def test_conversion_from_torchvision_swin_t_matches_logits():
    torch.manual_seed(0)
    ref = torchvision.models.swin_t().eval()
    with torch.no_grad():
        for p in ref.parameters():  # perturb everything, the bias tables and norms included
            p.add_(torch.randn_like(p) * 0.02)
    ours = swin_from_torchvision(ref)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


def test_shift_mask_matches_a_brute_force_construction():
    h = w = 8
    m, s = 4, 2
    # Brute force: label every pixel of the *unshifted* image by which band it falls in after the roll
    # (a token is "wrapped" when the roll carried it across the border), then roll the labels.
    rows = torch.arange(h)
    band = lambda i, n: 0 if i < n - m else (1 if i < n - s else 2)  # noqa: E731
    labels = torch.tensor([[3 * band(i, h) + band(j, w) for j in range(w)] for i in range(h)])
    assert torch.equal(shift_regions(h, w, m, s), labels)
    windows = window_partition(labels[None, :, :, None], m).squeeze(-1)       # (nW, M*M)
    mask = shift_attention_mask(h, w, m, s)
    for k in range(windows.shape[0]):
        for i in range(m * m):
            for j in range(m * m):
                assert mask[k, i, j] == (windows[k, i] == windows[k, j])
    # Which image pixels sit together after the shift: a window may only mix tokens that were
    # neighbours in the original (un-rolled) image, i.e. within M-1 rows and columns of each other.
    ij = torch.stack(torch.meshgrid(rows, rows, indexing="ij"), -1)
    rolled = torch.roll(ij, shifts=(-s, -s), dims=(0, 1))
    pos = window_partition(rolled[None].float(), m)                           # (nW, M*M, 2)
    far = (pos[:, :, None] - pos[:, None, :]).abs().amax(-1) > m - 1
    assert not (mask & far).any()          # tokens from opposite borders never attend to each other
    assert mask.diagonal(dim1=1, dim2=2).all()


def test_shift_then_reverse_shift_is_identity_and_windows_round_trip():
    x = torch.randn(2, 8, 12, 5)
    assert torch.equal(window_reverse(window_partition(x, 4), 4, 8, 12), x)
    assert torch.equal(torch.roll(torch.roll(x, (-2, -2), (1, 2)), (2, 2), (1, 2)), x)
    attn = WindowAttention(5 * 2, 2, window_size=4, shift_size=2).eval()
    y = torch.randn(1, 8, 8, 10)
    out, _ = attn(y)
    assert out.shape == y.shape


def test_patch_merging_shapes_and_order():
    merge = PatchMerging(3)
    with torch.no_grad():
        merge.norm.weight.fill_(1), merge.norm.bias.zero_()
    x = torch.arange(2 * 4 * 4 * 3, dtype=torch.float32).reshape(2, 4, 4, 3)
    assert merge(x).shape == (2, 2, 2, 6)
    # The 4C vector of output (0, 0) is x[0,0], x[1,0], x[0,1], x[1,1] (torchvision's order).
    from einops import rearrange
    cat = rearrange(x, "b (h dh) (w dw) c -> b h w (dw dh c)", dh=2, dw=2)
    torch.testing.assert_close(cat[0, 0, 0], torch.cat([x[0, 0, 0], x[0, 1, 0], x[0, 0, 1], x[0, 1, 1]]))
    with pytest.raises(ValueError, match="even feature map"):
        merge(torch.randn(1, 3, 3, 3))


def test_same_relative_offset_reads_the_same_row_of_the_bias_table():
    m = 3
    index = relative_position_index(m)
    coords = [(i, j) for i in range(m) for j in range(m)]
    rows = {}
    for a, (ya, xa) in enumerate(coords):
        for b, (yb, xb) in enumerate(coords):
            rows.setdefault((ya - yb, xa - xb), set()).add(index[a, b].item())
    assert all(len(r) == 1 for r in rows.values())          # one row per offset ...
    assert len(rows) == (2 * m - 1) ** 2                      # ... and every row used by exactly one offset
    assert index.max().item() == (2 * m - 1) ** 2 - 1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="windows do not tile"):
        SwinConfig(image_size=32, patch_size=2, window_size=3, depths=(2, 2), num_heads=(2, 4), dim=16)
    with pytest.raises(ValueError, match="stage 2: width"):
        SwinConfig(dim=16, depths=(2, 2), num_heads=(2, 3), image_size=32, patch_size=2, window_size=4)
    with pytest.raises(ValueError, match="cannot merge"):
        SwinConfig(image_size=28, patch_size=2, window_size=7, depths=(2, 2, 2), num_heads=(1, 2, 4), dim=8)
    attn = WindowAttention(8, 2, window_size=4)
    with pytest.raises(ValueError, match="does not tile"):
        attn(torch.randn(1, 6, 6, 8))
    model = SwinTransformer(image_size=32, patch_size=2, window_size=4, depths=(2, 2), num_heads=(2, 4), dim=16,
                            num_classes=3)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    with pytest.raises(ValueError, match="expects images of shape"):
        model(torch.randn(2, 3, 28, 28))
