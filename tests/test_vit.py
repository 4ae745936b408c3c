import pytest
import torch
import torchvision

from vitcourse.models import create_model
from vitcourse.models.vit import (LinearPatchEmbedding, PatchEmbedding, ViT, ViTConfig, config_of, patchify,
                                  resize_pos_embed)


def tiny(**kw):
    cfg = dict(image_size=32, patch_size=8, in_channels=3, num_classes=5, dim=32, depth=2, num_heads=4)
    return ViT(ViTConfig(**{**cfg, **kw}))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_patchify_order_is_row_major():
    # Patch k of a 2x2 grid is filled with the value k: patchify must list them top-left to bottom-right.
    img = torch.arange(4.0).reshape(1, 1, 2, 2).repeat_interleave(3, 2).repeat_interleave(3, 3)
    patches = patchify(img, 3)
    assert patches.shape == (1, 4, 9)
    assert torch.equal(patches[0, :, 0], torch.arange(4.0))
    assert torch.equal(patches[0].amin(1), patches[0].amax(1))


def test_conv_and_linear_patch_embedding_are_equal():
    torch.manual_seed(0)
    conv = PatchEmbedding(3, 24, patch_size=4)
    lin = LinearPatchEmbedding.from_conv(conv)
    x = torch.randn(2, 3, 16, 12)
    out = conv(x)
    assert out.shape == (2, 12, 24)
    torch.testing.assert_close(lin(x), out, atol=1e-5, rtol=1e-5)


def test_forward_shapes_and_attention():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(3, 3, 32, 32)
    logits, attentions = model(x, return_attention=True)
    assert logits.shape == (3, 5)
    assert len(attentions) == 2
    assert attentions[0].shape == (3, 4, 17, 17)
    torch.testing.assert_close(attentions[1].sum(-1), torch.ones(3, 4, 17))
    # The explicit path that returns weights computes what the SDPA path computes.
    torch.testing.assert_close(model(x), logits, atol=1e-5, rtol=1e-5)


def test_mean_pooling_ignores_class_token_output():
    torch.manual_seed(0)
    model = tiny(pool="mean").eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = model.encode(x)
    torch.testing.assert_close(model(x), model.head(tokens[:, 1:].mean(1)))


def test_stochastic_depth_grows_linearly_and_is_off_in_eval():
    model = tiny(depth=5, drop_path=0.2)
    rates = [b.drop_path.p for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), model(x))


def test_gradients_reach_every_parameter():
    model = tiny()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_no_weight_decay_on_embeddings_norms_and_biases():
    model = tiny()
    assert set(model.no_weight_decay()) <= set(dict(model.named_parameters()))
    from vitcourse.train import param_groups  # the package's own module: a broken import is a failure
    decay, no_decay = param_groups(model, 0.05)
    no_decay_ids = {id(p) for p in no_decay["params"]}
    assert id(model.pos_embed) in no_decay_ids and id(model.prefix.cls_token) in no_decay_ids
    assert id(model.blocks[0].norm1.weight) in no_decay_ids
    assert id(model.blocks[0].attn.qkv.weight) in {id(p) for p in decay["params"]}


def test_vit_b_16_matches_torchvision_parameter_count():
    model = create_model("vit_base_patch16_224")
    assert n_params(model) == 86_567_656  # torchvision's vit_b_16 and the paper's "86M"
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.parametrize("ours, theirs", [("vit_base_patch32_224", "vit_b_32"), ("vit_large_patch16_224", "vit_l_16"),
                                          ("vit_large_patch32_224", "vit_l_32"), ("vit_huge_patch14_224", "vit_h_14")])
def test_big_configs_match_torchvision_counts(ours, theirs):
    with torch.device("meta"):  # no memory, no initialisation cost: only shapes
        assert n_params(create_model(ours)) == n_params(getattr(torchvision.models, theirs)())


def test_paper_sizes():
    with torch.device("meta"):
        millions = {name: n_params(create_model(f"vit_{name}_224")) / 1e6
                    for name in ("tiny_patch16", "small_patch16", "large_patch16", "huge_patch14")}
    # DeiT table 1 (Ti 5M, S 22M) and ViT table 1 (L 307M, H 632M; the paper counts a 21k head).
    assert 5.5 < millions["tiny_patch16"] < 6.0
    assert 21.5 < millions["small_patch16"] < 22.5
    assert 300 < millions["large_patch16"] < 310
    assert 630 < millions["huge_patch14"] < 635


def test_registry_overrides_and_small_image_configs():
    model = create_model("vit_fashion_patch7_28")
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    model = create_model("vit_cifar_patch4_32", num_classes=100)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    model = create_model("vit_cifar_patch4_32", in_channels=1, image_size=28, num_classes=7)
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 7) and model.grid_size == 7
    model = create_model("vit_fashion_patch7_28", in_channels=3, image_size=35, num_classes=7)
    assert model(torch.randn(1, 3, 35, 35)).shape == (1, 7)
    assert config_of("vit_base_patch16_224").num_patches == 196
    assert config_of("vit_huge_patch14_224").num_patches == 256
    # The cpu profile's ViT has a 7x7 grid: room for a 2-D position structure (chapter 03).
    assert create_model("vit_fashion_patch4_28").grid_size == 7
    for variant in ("deit_fashion_patch4_28", "slvit_fashion_patch4_28", "vit_hybrid_fashion_28"):
        assert create_model(variant).eval()(torch.randn(1, 1, 28, 28)).shape[-1] == 10  # (DeiT: two heads in training)


def test_recipe_builds_for_the_data_and_takes_overrides():
    from vitcourse.data import synthetic
    from vitcourse.recipes import recipe
    data = synthetic("train", n=8, image_size=28, channels=1)
    r = recipe("vit", "cpu")
    model = r.build(data)
    assert model.config.image_size == 28 and model.config.in_channels == 1
    low = r.build(data, image_size=16)                    # train at a lower resolution (chapter 03)
    assert low.config.image_size == 16 and low.pos_embed.shape[1] == (16 // low.config.patch_size) ** 2 + 1


def test_interpolation_to_same_size_is_identity():
    torch.manual_seed(0)
    pos = torch.randn(1, 1 + 49, 16)
    torch.testing.assert_close(resize_pos_embed(pos, 7, 1), pos, atol=1e-6, rtol=0)


def test_interpolation_keeps_class_token_and_smooth_structure():
    # A position embedding that is linear in the row index stays linear after upsampling.
    rows = torch.arange(4.0).repeat_interleave(4)
    pos = torch.cat([torch.full((1, 1, 2), 7.0), torch.stack([rows, -rows], -1)[None]], dim=1)
    new = resize_pos_embed(pos, 8, 1)
    assert new.shape == (1, 65, 2)
    assert torch.equal(new[:, 0], pos[:, 0])
    grid = new[0, 1:, 0].reshape(8, 8)
    assert torch.allclose(grid, grid[:, :1].expand(8, 8))        # constant along each row
    assert (grid[1:, 0] >= grid[:-1, 0]).all()                    # still increasing down the rows


def test_set_image_size_runs_at_new_resolution():
    torch.manual_seed(0)
    model = tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    model.set_image_size(48)
    assert model.pos_embed.shape == (1, 1 + 36, 32)
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 5)
    model.set_image_size(32)  # back to the original grid: bicubic 6->4 is not an exact inverse
    assert model(x).shape == before.shape


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="not divisible by patch size"):
        ViTConfig(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        ViTConfig(dim=100, num_heads=3)
    with pytest.raises(ValueError, match="pool"):
        ViTConfig(pool="max")
    model = tiny()
    with pytest.raises(ValueError, match="set_image_size"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="expects images of shape"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="cannot interpolate"):
        model.set_image_size(36)
    with pytest.raises(ValueError, match="cannot interpolate"):
        model.set_image_size(0)
    with pytest.raises(ValueError, match="square grid"):
        resize_pos_embed(torch.randn(1, 1 + 12, 8), 4, 1)
