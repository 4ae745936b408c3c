"""Loading torchvision's and timm's ViT weights: the converted model computes the reference's function."""
import pytest
import torch
import torchvision

from vitcourse.models.convert import UnsupportedReference, vit_from_timm, vit_from_torchvision


def logits(model, image_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, image_size, image_size, generator=g)
    with torch.no_grad():
        return model.eval()(x)


def randomise_every_parameter(model):
    """A fresh model has zero biases, unit norms and (torchvision) a zero head weight, which outputs the
    head bias whatever the input: perturb every tensor so that any mis-copied one changes the logits."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def assert_same_function(reference, ours, image_size, head_bias):
    expected, got = logits(reference, image_size), logits(ours, image_size)
    # The input reaches the logits (they are not just the head bias), so agreeing means something ...
    assert (expected - head_bias).abs().max() > 0.05
    assert (expected - got).abs().max().item() <= 1e-4
    # ... and our model's encoder weights are used: one changed weight tensor changes the logits.
    with torch.no_grad():
        ours.blocks[0].attn.qkv.weight.mul_(1.5)
    assert (logits(ours, image_size) - expected).abs().max().item() > 1e-2


def test_torchvision_vit_b_16_parity():
    """vit_from_torchvision on vit_b_16: every tensor under the right name (ln_1/ln_2, q/k/v order...)."""
    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(weights=None)
    randomise_every_parameter(reference)
    ours = vit_from_torchvision(reference)
    assert ours.config.dim == 768 and ours.config.depth == 12 and ours.config.num_heads == 12
    assert_same_function(reference, ours, 224, reference.heads.head.bias)


def test_torchvision_small_custom_model():
    """vit_from_torchvision reads a non-default configuration (size, patch, depth, width, MLP ratio)."""
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    reference = VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=4, hidden_dim=64,
                                  mlp_dim=128, num_classes=10)
    randomise_every_parameter(reference)
    ours = vit_from_torchvision(reference)
    assert ours.config.mlp_ratio == 2.0
    assert_same_function(reference, ours, 32, reference.heads.head.bias)


def test_timm_vit_tiny_parity(timm):
    """vit_from_timm on vit_tiny_patch16_224."""
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    randomise_every_parameter(reference)
    ours = vit_from_timm(reference)
    assert_same_function(reference, ours, 224, reference.head.bias)


def test_timm_mean_pooling_and_other_sizes(timm):
    """vit_from_timm with average pooling, another image and patch size, depth and number of classes."""
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, global_pool="avg", fc_norm=False,
                                  img_size=64, patch_size=8, num_classes=7, depth=3)
    randomise_every_parameter(reference)
    ours = vit_from_timm(reference)
    assert ours.config.pool == "mean" and ours.config.image_size == 64 and ours.config.num_classes == 7
    assert_same_function(reference, ours, 64, reference.head.bias)


def test_unsupported_torchvision_references_raise_clear_errors():
    from torchvision.models.vision_transformer import VisionTransformer
    with pytest.raises(UnsupportedReference, match="representation_size"):
        vit_from_torchvision(VisionTransformer(32, 4, 1, 2, 16, 32, representation_size=8))
    with pytest.raises(UnsupportedReference, match="expected a torchvision"):
        vit_from_torchvision(torch.nn.Linear(2, 2))


def test_unsupported_timm_references_raise_clear_errors(timm):
    from torchvision.models.vision_transformer import VisionTransformer
    with pytest.raises(UnsupportedReference, match="LayerScale"):
        vit_from_timm(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, init_values=1e-5))
    with pytest.raises(UnsupportedReference, match="register"):
        vit_from_timm(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, reg_tokens=4))
    with pytest.raises(UnsupportedReference, match="fc_norm"):
        vit_from_timm(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, global_pool="avg"))
    with pytest.raises(UnsupportedReference, match="expected a timm"):
        vit_from_timm(VisionTransformer(32, 4, 1, 2, 16, 32))
