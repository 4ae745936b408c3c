from dataclasses import replace

import pytest
import torch

from vitcourse.data import DeviceLoader, Resized, random_crop, random_resized_crop, synthetic


@pytest.fixture(scope="module")
def data():
    return synthetic("train", n=300)


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_cover_the_split_once_and_are_normalised(data):
    loader = DeviceLoader(data, 64, shuffle=True, device="cpu")
    batches = _epoch(loader)
    assert len(batches) == len(loader) == 5 and batches[-1][0].shape[0] == 300 - 4 * 64
    labels = torch.cat([y for _, y in batches])
    assert torch.equal(labels.sort().values, data.labels.sort().values)
    x = torch.cat([x for x, _ in batches])
    assert x.dtype == torch.float32 and abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    assert len(DeviceLoader(data, 64, drop_last=True, device="cpu")) == 4
    assert all(x.shape[0] == 64 for x, _ in DeviceLoader(data, 64, drop_last=True, device="cpu"))


def test_same_seed_same_batches_new_epoch_new_order(data):
    kw = dict(crop_padding=4, flip=True, seed=7, device="cpu")
    a, b = DeviceLoader(data, 32, **kw), DeviceLoader(data, 32, **kw)
    first_a, first_b = _epoch(a), _epoch(b)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(first_a, first_b))
    second = _epoch(a)  # the epoch counter advanced: a new shuffle
    assert not torch.equal(first_a[0][1], second[0][1])
    a.set_epoch(0)  # replaying epoch 0 (what resume does) gives it back exactly
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(_epoch(a), first_a))
    other_seed = _epoch(DeviceLoader(data, 32, crop_padding=4, flip=True, seed=8, device="cpu"))
    assert not torch.equal(other_seed[0][1], first_a[0][1])


def test_crop_and_flip_are_drawn_per_sample():
    """Random crops and flips differ within a batch; a flip is the left-right mirror, nothing else."""
    one = synthetic("train", n=1)
    same = replace(one, images=one.images.repeat(256, 1, 1, 1), labels=one.labels.repeat(256))
    (x, _), = DeviceLoader(same, 256, shuffle=False, crop_padding=4, device="cpu")
    distinct = {tuple(v.flatten()[::7].tolist()) for v in x}
    assert len(distinct) > 30, "identical images should get different crops within one batch"
    (x, _), = DeviceLoader(same, 256, shuffle=False, flip=True, device="cpu")
    (plain, _), = DeviceLoader(same, 256, shuffle=False, device="cpu")
    original, mirror = plain[0], plain[0].flip(-1)                # left-right: the last (width) axis
    assert not torch.equal(original, mirror)
    kept = torch.tensor([torch.equal(v, original) for v in x])
    mirrored = torch.tensor([torch.equal(v, mirror) for v in x])
    assert (kept | mirrored).all(), "every image is either the original or its left-right mirror"
    assert 50 < kept.sum() < 206  # about half of each


def test_random_crop_moves_content_by_at_most_the_padding():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, g)
    assert out.shape == x.shape
    for i in range(2):  # every crop is a shifted window of the zero-padded image
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        windows = [padded[:, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_mixup_cutmix_give_soft_targets(data):
    loader = DeviceLoader(data, 50, mixup_alpha=0.8, cutmix_alpha=1.0, seed=1, device="cpu")
    x, y = next(iter(loader))
    assert y.shape == (50, 10) and y.dtype == torch.float32
    assert torch.allclose(y.sum(1), torch.ones(50))
    assert (y.max(1).values < 1).any(), "some targets should be mixed"
    x2, y2 = next(iter(DeviceLoader(data, 50, mixup_alpha=0.8, cutmix_alpha=1.0, seed=1, device="cpu")))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_randaugment_is_seeded_and_changes_images(data):
    plain = next(iter(DeviceLoader(data, 64, shuffle=False, device="cpu")))[0]
    a = next(iter(DeviceLoader(data, 64, shuffle=False, randaugment=True, seed=2, device="cpu")))[0]
    b = next(iter(DeviceLoader(data, 64, shuffle=False, randaugment=True, seed=2, device="cpu")))[0]
    assert torch.equal(a, b) and not torch.equal(a, plain)
    # randomness per group: different groups of the same batch get different ops
    group_changes = [(a[i:i + 16] - plain[i:i + 16]).abs().mean().item() for i in range(0, 64, 16)]
    assert len({round(c, 4) for c in group_changes}) > 1


def test_bad_batch_sizes(data):
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(data, 0, device="cpu")
    with pytest.raises(ValueError, match="drop_last"):
        DeviceLoader(data, 1000, drop_last=True, device="cpu")


def test_random_resized_crop_scale_one_is_the_whole_image_resized():
    x = torch.rand(3, 1, 28, 28)
    g = torch.Generator().manual_seed(0)
    out = random_resized_crop(x, 28, (1.0, 1.0), g, ratio=(1.0, 1.0))
    assert torch.allclose(out, x, atol=1e-5)  # the identity crop at the same size
    small = random_resized_crop(x, 20, (1.0, 1.0), g, ratio=(1.0, 1.0))
    assert small.shape == (3, 1, 20, 20)


def test_random_resized_crop_zooms_in_per_sample():
    # A centred bright square: a crop of a quarter of the area magnifies it, so more pixels are bright.
    x = torch.zeros(256, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    g = torch.Generator().manual_seed(0)
    out = random_resized_crop(x, 28, (0.25, 0.25), g, ratio=(1.0, 1.0))
    bright = (out > 0.5).flatten(1).sum(1).float()
    assert bright.max() > 1.5 * 64  # a zoomed-in copy covers more than the square's 64 pixels
    assert len({tuple(v.flatten()[::29].tolist()) for v in out}) > 30  # different crops per sample


def test_crop_scale_in_the_loader_and_its_errors(data):
    loader = DeviceLoader(data, 50, crop_scale=(0.35, 1.0), crop_size=20, seed=3, device="cpu")
    x, _ = next(iter(loader))
    assert x.shape[-2:] == (20, 20) and loader.describe()["crop_scale"] == [0.35, 1.0]
    again, _ = next(iter(DeviceLoader(data, 50, crop_scale=(0.35, 1.0), crop_size=20, seed=3, device="cpu")))
    assert torch.equal(x, again)
    with pytest.raises(ValueError, match="fraction of the image area"):
        DeviceLoader(data, 50, crop_scale=(0.0, 1.0), device="cpu")
    with pytest.raises(ValueError, match="choose one"):
        DeviceLoader(data, 50, crop_scale=(0.5, 1.0), crop_padding=4, device="cpu")
    with pytest.raises(ValueError, match="set crop_scale too"):
        DeviceLoader(data, 50, crop_size=20, device="cpu")
    assert "crop_scale" not in DeviceLoader(data, 50, device="cpu").describe()


def test_resized_shrinks_with_antialiasing_and_enlarges_smoothly():
    """Resized(loader, size): every batch at size x size, labels untouched. Shrinking averages (a 1-pixel
    checkerboard shrunk 3x is flat grey, where plain sampling would keep +-1); enlarging keeps a
    constant image constant and a ramp increasing."""
    i = torch.arange(24)
    checkerboard = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float().expand(2, 3, 24, 24)
    labels = torch.tensor([3, 7])
    (small, y), = Resized([(checkerboard, labels)], 8)
    assert small.shape == (2, 3, 8, 8) and torch.equal(y, labels)
    assert small.abs().max() < 0.05
    ramp = torch.arange(8.0).expand(1, 1, 8, 8)                      # increasing along the width
    constant = torch.full((1, 1, 8, 8), 0.7)
    (big, _), = Resized([(torch.cat([ramp, constant]), labels)], 16)
    assert big.shape == (2, 1, 16, 16)
    assert torch.allclose(big[1], torch.full((1, 16, 16), 0.7), atol=1e-5)
    assert (big[0, 0, :, 1:] > big[0, 0, :, :-1]).all() and torch.allclose(big[0, 0], big[0, 0, :1].expand(16, 16))


def test_resized_passes_the_loader_through(data):
    """Length, epochs (set_epoch reproduces one), unit and the run description come from the inner loader."""
    inner = DeviceLoader(data, 64, flip=True, crop_padding=2, seed=3, device="cpu")
    loader = Resized(inner, 16)
    assert len(loader) == len(inner) == 5 and loader.unit == "images" and not loader.mixes_targets
    first = _epoch(loader)
    assert all(x.shape == (len(y), 3, 16, 16) for x, y in first)
    loader.set_epoch(0)
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(_epoch(loader), first))
    assert loader.describe() == {**inner.describe(), "resized_to": 16}
