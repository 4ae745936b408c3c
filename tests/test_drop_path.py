import pytest
import torch

from vitcourse.nn import DropPath


def test_drop_path_drops_whole_samples_and_keeps_the_expectation():
    drop = DropPath(0.25).train()
    y = drop(torch.ones(20000, 4, 3))
    per_sample = y.flatten(1)
    assert torch.equal(per_sample.min(1).values, per_sample.max(1).values)  # all or nothing per sample
    assert per_sample[:, 0].unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs(y.mean().item() - 1.0) < 0.03 and abs((y[:, 0, 0] == 0).float().mean().item() - 0.25) < 0.02
    x = torch.randn(5, 7)
    assert torch.equal(drop.eval()(x), x) and torch.equal(DropPath(0.0).train()(x), x)


def test_drop_path_rejects_bad_rates():
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
