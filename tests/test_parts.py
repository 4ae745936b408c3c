"""The ViT assembled from named parts: registries, every combination, initialisation."""
import itertools

import pytest
import torch
import torch.nn as nn

from vitcourse.models import create_model
from vitcourse.models.parts import ATTENTIONS, PREFIXES, TOKENIZERS
from vitcourse.models.vit import ViT, ViTConfig

SMALL = dict(image_size=16, patch_size=4, in_channels=3, num_classes=5, dim=16, depth=2, num_heads=2)


@pytest.mark.parametrize("field, registry", [("tokenizer", TOKENIZERS), ("attention", ATTENTIONS),
                                             ("prefix", PREFIXES)])
def test_unknown_part_names_list_the_known_ones(field, registry):
    with pytest.raises(ValueError) as err:
        ViTConfig(**SMALL, **{field: "no_such_part"})
    message = str(err.value)
    assert f"unknown {field} 'no_such_part'" in message
    assert all(name in message for name in registry.names())


def test_a_close_name_is_suggested():
    with pytest.raises(ValueError, match="Did you mean 'patch'"):
        ViTConfig(**SMALL, tokenizer="pach")


@pytest.mark.parametrize("tokenizer, attention, prefix", list(itertools.product(
    TOKENIZERS.names(), ATTENTIONS.names(), PREFIXES.names())))
def test_every_combination_runs_forward_and_backward(tokenizer, attention, prefix):
    torch.manual_seed(0)
    pool = "mean" if prefix == "none" else "cls"
    model = ViT(ViTConfig(**SMALL, tokenizer=tokenizer, attention=attention, prefix=prefix, pool=pool))
    x = torch.randn(3, 3, 16, 16)
    out, attentions = model(x, return_attention=True)
    outputs = out if isinstance(out, tuple) else (out,)  # a DeiT returns (class, distillation) in training
    assert all(o.shape == (3, 5) for o in outputs)
    assert attentions[0].shape == (3, 2, model.num_prefix_tokens + 16, model.num_prefix_tokens + 16)
    sum(o.sum() for o in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"


def test_class_pooling_needs_a_class_token():
    with pytest.raises(ValueError, match="pool='mean'"):
        ViTConfig(**SMALL, prefix="none", pool="cls")


class ConvStem(nn.Module):
    """A test tokenizer with bias-free convolutions, batch norm and its own (Kaiming) initialisation."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c.in_channels, c.dim, c.patch_size, c.patch_size, bias=False)
        self.norm = nn.BatchNorm2d(c.dim)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.norm.reset_parameters()

    def forward(self, x):
        return self.norm(self.conv(x)).flatten(2).transpose(1, 2)


class BiasFreeStem(nn.Module):
    """A bias-free convolution without its own initialisation: the ViT's must cope with bias=None."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c.in_channels, c.dim, c.patch_size, c.patch_size, bias=False)

    def forward(self, x):
        return self.conv(x).flatten(2).transpose(1, 2)


def test_a_part_with_its_own_initialisation_keeps_it(monkeypatch):
    """ViT.reset_parameters leaves a part with its own reset_parameters to it (Kaiming here), and
    gives trunc-normal(0.02) to the layers it owns and to parts without one."""
    monkeypatch.setitem(TOKENIZERS._items, "test_stem", ConvStem)
    monkeypatch.setitem(TOKENIZERS._items, "test_bias_free", BiasFreeStem)
    torch.manual_seed(0)
    model = ViT(ViTConfig(**SMALL, tokenizer="test_stem"))
    weight = model.patch_embed.conv.weight                               # 16 x 3 x 4 x 4: 768 samples
    fan_out = weight.shape[0] * weight.shape[2] * weight.shape[3]        # kaiming_normal_(mode="fan_out")
    kaiming = (2 / fan_out) ** 0.5                                       # gain sqrt(2) for ReLU: 0.088
    assert kaiming > 4 * 0.02           # the two initialisations are far apart at this shape ...
    assert weight.std().item() == pytest.approx(kaiming, rel=0.15)      # ... (sampling error ~3%)
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.15)
    model = ViT(ViTConfig(**SMALL, tokenizer="test_bias_free"))           # no crash on bias=None
    assert model.patch_embed.conv.weight.std().item() == pytest.approx(0.02, rel=0.2)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)


def test_prefix_tokens_come_from_the_model():
    model = create_model("vit_smoke_patch8_32")
    assert model.num_prefix_tokens == 1 and model.pos_embed.shape[1] == 1 + model.config.num_patches
    mean_pooled = ViT(ViTConfig(**SMALL, prefix="none", pool="mean"))
    assert mean_pooled.num_prefix_tokens == 0 and mean_pooled.pos_embed.shape[1] == 16
    mean_pooled.set_image_size(24)
    assert mean_pooled.pos_embed.shape[1] == 36
