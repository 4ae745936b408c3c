"""Chapter 04's package pieces: the hybrid tokenizer, fixed-step loaders, resumable studies, transfer."""
import urllib.error

import pytest
import torch

from vitcourse.data import DeviceLoader, FixedSteps, synthetic
from vitcourse.models import create_model
from vitcourse.models.hybrid import ResNetTokenizer
from vitcourse.models.vit import ViT, ViTConfig
from vitcourse.study import Study
from vitcourse.transfer import pretrained_vit, split_classes


@pytest.mark.parametrize("image_size, patch_size, tokens", [(28, 4, 49), (32, 4, 64), (32, 8, 16)])
def test_hybrid_tokenizer_shapes_forward_and_backward(image_size, patch_size, tokens):
    torch.manual_seed(0)
    tok = ResNetTokenizer(1, 24, patch_size)
    x = torch.randn(2, 1, image_size, image_size)
    assert tok.features(x).shape == (2, 64, image_size // 4, image_size // 4)  # three stages: stride 4
    assert tok(x).shape == (2, tokens, 24)
    model = ViT(ViTConfig(image_size=image_size, patch_size=patch_size, in_channels=1, num_classes=3, dim=24,
                          depth=1, num_heads=2, tokenizer="resnet"))
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_hybrid_keeps_its_cnn_initialisation_and_rejects_bad_patches():
    torch.manual_seed(0)
    model = create_model("vit_hybrid_fashion_28")
    conv = model.patch_embed.stem[0]
    assert conv.bias is None
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)  # Kaiming, not 0.02
    assert model.patch_embed.proj.weight.std().item() == pytest.approx(0.02, rel=0.15)
    with pytest.raises(ValueError, match="stride 4"):
        ResNetTokenizer(3, 16, patch_size=6)
    names = ["vit_hybrid_fashion_28", "vit_hybrid_cifar_32", "vit_hybrid_smoke_32"]
    assert all(create_model(n).config.tokenizer == "resnet" for n in names)


def test_fixed_steps_continue_the_stream_and_repeat_exactly():
    data = synthetic("train", n=100, image_size=8)
    inner = DeviceLoader(data, 16, drop_last=True, seed=3, device="cpu")   # 6 batches per pass
    stream = []
    for e in range(3):
        inner.set_epoch(e)
        stream += [y for _, y in inner]
    loader = FixedSteps(DeviceLoader(data, 16, drop_last=True, seed=3, device="cpu"), steps=4)
    assert len(loader) == 4
    got = []
    for e in range(4):
        loader.set_epoch(e)
        got += [y for _, y in loader]
    assert len(got) == 16 and all(torch.equal(a, b) for a, b in zip(got, stream[:16]))
    loader.set_epoch(2)  # a resume at epoch 2 sees batches 8..11 of the stream
    assert all(torch.equal(a, b) for a, b in zip([y for _, y in loader], stream[8:12]))
    assert loader.describe()["steps_per_epoch"] == 4 and loader.unit == "images"


def test_an_interrupted_study_trains_only_the_missing_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    grid = [{"model": m, "fraction": f} for m in ("vit", "resnet") for f in (0.1, 0.5)]
    trained = []

    class Disconnect(Exception):
        pass

    def train(config, stop_at=None):
        if len(trained) == stop_at:
            raise Disconnect
        trained.append(config)
        return {"metrics": {"acc": config["fraction"]}}

    study = Study("grid", root=tmp_path)
    with pytest.raises(Disconnect):
        for config in grid:
            study.run(config, lambda c: train(c, stop_at=2))
    assert trained == grid[:2]
    again = Study("grid", root=tmp_path)  # the notebook is run again after the disconnect
    for config in grid:
        again.run(config, train)
    assert trained == grid  # the two finished runs were not trained again
    assert [r["fraction"] for r in again.results()] == [0.1, 0.5, 0.1, 0.5]


def test_offline_path_when_weights_cannot_be_downloaded(monkeypatch):
    import torchvision

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "vit_b_32", no_network)
    model, why = pretrained_vit("vit_b_32", num_classes=10)
    assert model is None and "could not download" in why and "offline variant" in why


def test_pretrained_path_converts_and_replaces_the_head(monkeypatch):
    import torchvision
    small = lambda weights=None: torchvision.models.VisionTransformer(  # noqa: E731  (random weights, no download)
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
    monkeypatch.setattr(torchvision.models, "vit_b_32", small)
    model, why = pretrained_vit("vit_b_32", num_classes=5)
    assert why is None and model.config.num_classes == 5
    assert torch.equal(model.head.weight, torch.zeros(5, 16))  # zero-initialised new head (ViT appendix B.1.1)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_split_classes_relabels():
    data = synthetic("train", n=100, image_size=8)
    half = split_classes(data, [7, 2])
    assert set(half.labels.tolist()) == {0, 1} and half.classes == [data.classes[7], data.classes[2]]
    assert len(half) == int(((data.labels == 7) | (data.labels == 2)).sum())
    assert torch.equal(half.images[half.labels == 0], data.images[data.labels == 7])
    with pytest.raises(ValueError, match="distinct"):
        split_classes(data, [1, 1])
