"""SL-ViT: Shifted Patch Tokenization, Locality Self-Attention, the receptive-field formula."""
import pytest
import torch

from vitcourse.models.parts import PatchEmbedding
from vitcourse.models.vit import ViT, ViTConfig
from vitcourse.nn import LocalitySelfAttention, ShiftedPatchTokenization, receptive_field, token_receptive_field


def test_spt_shapes():
    spt = ShiftedPatchTokenization(3, 24, patch_size=4)
    assert spt.shifted(torch.randn(2, 3, 16, 16)).shape == (2, 15, 16, 16)       # 5C channels
    assert spt(torch.randn(2, 3, 16, 16)).shape == (2, 16, 24)


def _support(tokenizer, token: int, size: int = 16):
    """Bounding box (rows, columns) of the pixels that the token's output depends on (its gradient)."""
    x = torch.randn(1, 1, size, size, requires_grad=True)
    tokenizer(x)[0, token].sum().backward()
    rows, cols = (x.grad[0, 0].abs() > 0).nonzero(as_tuple=True)
    return (rows.min().item(), rows.max().item()), (cols.min().item(), cols.max().item())


def test_an_spt_token_sees_its_patch_and_half_a_patch_around_it():
    torch.manual_seed(0)
    p = 4
    token = 5                                   # row 1, column 1 of the 4x4 grid: pixels 4..7
    assert _support(PatchEmbedding(1, 8, p), token) == ((4, 7), (4, 7))
    assert _support(ShiftedPatchTokenization(1, 8, p), token) == ((2, 9), (2, 9))  # grown by p/2 each side
    # The control without shifts sees only its patch, like a patch embedding, but normalises it first.
    control = ShiftedPatchTokenization(1, 8, p, directions=())
    assert _support(control, token) == ((4, 7), (4, 7)) and control.norm.normalized_shape == (p * p,)


def test_the_patch_norm_control_is_a_registered_tokenizer():
    from vitcourse.models import create_model
    model = create_model("vit_smoke_patch8_32", tokenizer="patch_norm")
    assert isinstance(model.patch_embed, ShiftedPatchTokenization) and model.patch_embed.directions == ()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_lsa_never_attends_to_itself_and_both_paths_agree():
    torch.manual_seed(0)
    lsa = LocalitySelfAttention(16, 4).eval()
    x = torch.randn(2, 7, 16)
    fast, _ = lsa(x)
    slow, weights = lsa(x, need_weights=True)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    assert torch.equal(weights.diagonal(dim1=-2, dim2=-1), torch.zeros(2, 4, 7))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7))
    torch.testing.assert_close(lsa.scale.detach(), torch.full((4,), 4 ** -0.5))     # 1/sqrt(d_k) at init
    lsa.train()
    lsa(x)[0].sum().backward()
    assert lsa.scale.grad is not None and lsa.scale.grad.abs().sum() > 0       # the temperature learns


def test_receptive_field_formula():
    assert token_receptive_field(1, 16, 16) == 16                               # ViT-B/16's patch tokens
    assert receptive_field([(16, 16)]) == 16
    assert token_receptive_field(1, 8, 4) == 8                                  # SPT, patch 4: 2P
    # ResNet-50 (v1: the stride-2 convolution of a stage is its first 1x1) along its main path.
    layers = [(7, 2), (3, 2)]                                                    # stem conv, max pool
    for blocks, stride in ((3, 1), (4, 2), (6, 2), (3, 2)):
        for b in range(blocks):
            layers += [(1, stride if b == 0 else 1), (3, 1), (1, 1)]
    assert receptive_field(layers) == 483


def test_slvit_configs_build():
    from vitcourse.models import create_model
    for name in ("spt_fashion_patch7_28", "lsa_fashion_patch7_28", "slvit_fashion_patch7_28"):
        model = create_model(name)
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    vit = ViT(ViTConfig(image_size=16, patch_size=4, in_channels=1, num_classes=3, dim=16, depth=1, num_heads=2,
                        tokenizer="spt", attention="lsa"))
    assert isinstance(vit.blocks[0].attn, LocalitySelfAttention)
    with pytest.raises(ValueError, match="unknown attention"):
        ViTConfig(attention="lsaa")
