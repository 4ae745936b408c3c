import pytest
import torch
import torchvision

from vitcourse.models.convert import UnsupportedReference, vit_from_timm, vit_from_torchvision

timm = pytest.importorskip("timm")


def max_logit_diff(reference, ours, image_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, image_size, image_size, generator=g)
    with torch.no_grad():
        return (reference.eval()(x) - ours.eval()(x)).abs().max().item()


def randomise_biases_and_norms(model):
    """Random init leaves biases at 0 and norms at 1: randomise them so a mix-up of those would show."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def test_torchvision_vit_b_16_parity():
    torch.manual_seed(0)
    reference = torchvision.models.vit_b_16(weights=None)
    randomise_biases_and_norms(reference)
    ours = vit_from_torchvision(reference)
    assert ours.config.dim == 768 and ours.config.depth == 12 and ours.config.num_heads == 12
    assert max_logit_diff(reference, ours, 224) <= 1e-4


def test_timm_vit_tiny_parity():
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False)
    randomise_biases_and_norms(reference)
    ours = vit_from_timm(reference)
    assert max_logit_diff(reference, ours, 224) <= 1e-4
    # The attention weights our ViT returns are the reference's too: one changed weight changes the logits.
    with torch.no_grad():
        ours.blocks[3].attn.qkv.weight[0, 0] += 1.0
    assert max_logit_diff(reference, ours, 224) > 1e-4


def test_timm_mean_pooling_and_other_sizes():
    torch.manual_seed(0)
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, global_pool="avg", fc_norm=False,
                                  img_size=64, patch_size=8, num_classes=7, depth=3)
    randomise_biases_and_norms(reference)
    ours = vit_from_timm(reference)
    assert ours.config.pool == "mean" and ours.config.image_size == 64 and ours.config.num_classes == 7
    assert max_logit_diff(reference, ours, 64) <= 1e-4


def test_torchvision_small_custom_model():
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    reference = VisionTransformer(image_size=32, patch_size=4, num_layers=2, num_heads=4, hidden_dim=64,
                                  mlp_dim=128, num_classes=10)
    randomise_biases_and_norms(reference)
    ours = vit_from_torchvision(reference)
    assert ours.config.mlp_ratio == 2.0
    assert max_logit_diff(reference, ours, 32) <= 1e-4


def test_unsupported_references_raise_clear_errors():
    from torchvision.models.vision_transformer import VisionTransformer
    with pytest.raises(UnsupportedReference, match="representation_size"):
        vit_from_torchvision(VisionTransformer(32, 4, 1, 2, 16, 32, representation_size=8))
    with pytest.raises(UnsupportedReference, match="expected a torchvision"):
        vit_from_torchvision(torch.nn.Linear(2, 2))
    with pytest.raises(UnsupportedReference, match="LayerScale"):
        vit_from_timm(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, init_values=1e-5))
    with pytest.raises(UnsupportedReference, match="register"):
        vit_from_timm(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, reg_tokens=4))
    with pytest.raises(UnsupportedReference, match="fc_norm"):
        vit_from_timm(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=1, global_pool="avg"))
    with pytest.raises(UnsupportedReference, match="expected a timm"):
        vit_from_timm(VisionTransformer(32, 4, 1, 2, 16, 32))
