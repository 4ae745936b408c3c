"""Swin: windows, the cyclic shift and its mask, relative position bias, patch merging, torchvision parity."""
import pytest
import torch
import torchvision

from vitcourse.models import create_model
from vitcourse.models.convert import UnsupportedReference, swin_from_torchvision
from vitcourse.models import registry
from vitcourse.models.swin import (PatchMerging, SwinConfig, SwinTransformer, WindowAttention, register_swin,
                                   relative_position_index, shift_attention_mask, shift_regions, window_partition,
                                   window_reverse)

TINY = dict(image_size=16, patch_size=2, in_channels=3, num_classes=3, dim=8, window_size=4, mlp_ratio=2.0)


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


def _small_torchvision_swin(seed: int = 0):
    """A torchvision Swin for 32 px images (2x2 patches, 4x4 windows: 16x16 then 8x8 maps, both shifted),
    every weight perturbed so that the logits are of order 1 and a wrong tensor shows."""
    from torchvision.models.swin_transformer import SwinTransformer as TVSwin
    torch.manual_seed(seed)
    ref = TVSwin(patch_size=[2, 2], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4],
                 num_classes=10).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return ref


def test_conversion_of_a_32px_torchvision_swin_matches_logits():
    ref = _small_torchvision_swin()
    ours = swin_from_torchvision(ref, image_size=32)
    assert ours.config.image_size == 32
    # Both stages are wider than one window, so both have shifted blocks and the shift mask is exercised.
    assert [b.attn.shift_size for stage in ours.stages for b in stage] == [0, 2, 0, 2]
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = ref(x)
        assert expected.abs().max() > 0.5                     # logits large enough for atol to mean something
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_conversion_refuses_image_sizes_the_two_swins_do_not_share():
    """Sizes that convert are multiples of patch * 2**(stages-1) * window = 16 here; every other size is
    refused with that fix, whether SwinConfig rejects it or it would give a map smaller than a window."""
    ref = _small_torchvision_swin()
    # 8 px: stage 2's map is 2x2, smaller than the 4x4 window. SwinConfig accepts it (ours would shrink
    # the window to the map) but torchvision pads the map to a window, a different function.
    with pytest.raises(UnsupportedReference, match=r"stage 2 has a 2x2 feature map, smaller than the 4x4 "
                                                   r"window.*torchvision pads.*multiple of 16"):
        swin_from_torchvision(ref, image_size=8)
    # 24 px: a 12x12 then 6x6 map; 4x4 windows do not tile 6x6 (SwinConfig's check, reused).
    with pytest.raises(UnsupportedReference, match=r"image_size=24: stage 2 has a 6x6 feature map that 4x4 "
                                                   r"windows do not tile.*multiple of 16"):
        swin_from_torchvision(ref, image_size=24)
    with pytest.raises(UnsupportedReference, match=r"not divisible by patch size 2.*multiple of 16"):
        swin_from_torchvision(ref, image_size=31)
    # swin_t keeps its default of 224 px and has no other size below 448.
    with pytest.raises(UnsupportedReference, match="multiple of 224"):
        swin_from_torchvision(torchvision.models.swin_t(), image_size=32)


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


@pytest.mark.parametrize("name, channels, size, shifts", [
    # 28 px, patch 2: a 14x14 map (7x7 windows, shifted by 3), then 7x7: one window, nothing to shift.
    ("swin_fashion_28", 1, 28, [0, 3, 0, 0]),
    # 32 px, patch 2: 16x16 and 8x8 maps (4x4 windows, shifted by 2), then 4x4: one window.
    ("swin_cifar_32", 3, 32, [0, 2, 0, 2, 0, 0, 0, 0]),
])
def test_course_swins_build_run_and_shift_where_there_is_room(name, channels, size, shifts):
    """The profile Swins of chapter 07: built by name, a forward and backward pass on their images, every
    parameter trained, and regular/shifted windows alternating in the stages wider than one window."""
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(2, channels, size, size)
    assert model.train()(x).shape == (2, 10)                  # with stochastic depth ...
    model.eval()(x).sum().backward()                          # ... and without (every branch kept)
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()] == []
    assert [b.attn.shift_size for stage in model.stages for b in stage] == shifts


def test_course_swins_have_about_the_parameters_of_chapter_03s_vit_as_swin_py_says():
    """SWIN_CONFIGS' comment, and chapter 07's comparison of like with like: in every profile the Swin has
    about the parameters of chapter 03's ViT and is trained by the same recipe but for the model."""
    from vitcourse.recipes import recipe

    def params(name, profile):
        with torch.device("meta"):
            return sum(p.numel() for p in create_model(recipe(name, profile).model).parameters())

    for profile in ("smoke", "cpu", "gpu"):
        assert params("swin", profile) == pytest.approx(params("vit", profile), rel=0.1), profile
        assert recipe("swin", profile).replace(model="x") == recipe("vit", profile).replace(model="x"), profile


def test_swin_configs_are_validated_at_registration(monkeypatch):
    """A named Swin whose windows do not tile fails when it is registered, and is not registered."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    bad = dict(image_size=28, patch_size=2, in_channels=1, num_classes=10, dim=16, depths=(2, 2),
               num_heads=(2, 4), window_size=5)                      # 5x5 windows on a 14x14 map
    with pytest.raises(ValueError, match="do not tile"):
        register_swin("swin_test_bad_windows", bad)
    assert "swin_test_bad_windows" not in registry.list_models()


def test_return_attention_gives_every_blocks_masked_window_weights():
    """return_attention: the same logits, and one (B * windows, heads, M*M, M*M) weight tensor per block,
    rows summing to 1; in a shifted block, tokens from different regions get exactly 0."""
    torch.manual_seed(0)
    model = SwinTransformer(**TINY, depths=(2, 2), num_heads=(1, 2)).eval()
    x = torch.randn(2, 3, 16, 16)
    logits, attentions = model(x, return_attention=True)
    torch.testing.assert_close(logits, model(x))
    # 8x8 map: 4 windows of 4x4 per image, 1 head; then a 4x4 map: 1 window, 2 heads.
    assert [tuple(a.shape) for a in attentions] == [(8, 1, 16, 16)] * 2 + [(2, 2, 16, 16)] * 2
    for a in attentions:
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))
    allowed = shift_attention_mask(8, 8, 4, 2).repeat(2, 1, 1)[:, None]        # block 2 is shifted by 2
    assert not attentions[1][~allowed.expand_as(attentions[1])].any()
    assert (~allowed).any() and (attentions[0] > 0).all()                     # block 1: no mask


def test_drop_path_grows_linearly_over_all_blocks_of_all_stages():
    """Stochastic depth (Swin section 4.1, as in DeiT): rate 0 for the first block up to drop_path for the
    last one, counted across stages, not restarted in each."""
    model = SwinTransformer(**TINY, depths=(2, 4), num_heads=(1, 2), drop_path=0.1)
    rates = [b.drop_path.p for stage in model.stages for b in stage]
    assert rates == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
