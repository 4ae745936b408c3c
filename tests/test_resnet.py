import pytest
import torch

from vitcourse.models import create_model, list_models
from vitcourse.models.resnet import BasicBlock


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,paper", [("resnet20", 0.27e6), ("resnet32", 0.46e6), ("resnet56", 0.85e6)])
def test_parameter_counts_match_he_et_al_table6(name, paper):
    # He et al. (2016), table 6, with option-A shortcuts; our projection shortcuts add ~1%.
    n = _params(create_model(name, num_classes=10))
    assert paper <= n <= paper * 1.02, n


@pytest.mark.parametrize("in_channels,size", [(3, 32), (1, 28)])
def test_shapes_for_both_data_sets(in_channels, size):
    model = create_model("resnet20", num_classes=10, in_channels=in_channels, image_size=size)
    assert model(torch.randn(2, in_channels, size, size)).shape == (2, 10)
    assert model.features(torch.randn(2, in_channels, size, size)).shape == (2, 64, size // 4, size // 4)


def test_plain_network_has_no_shortcut():
    block = BasicBlock(8, 8, residual=False)
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        for m in block.f:
            if hasattr(m, "weight") and m.weight is not None:
                m.weight.zero_()
            if hasattr(m, "bias") and m.bias is not None:
                m.bias.zero_()
    assert torch.equal(block(x), torch.zeros_like(x))  # F(x) = 0 and nothing else
    residual = BasicBlock(8, 8)
    residual.load_state_dict(block.state_dict())
    assert torch.equal(residual(x), x.relu())  # F(x) = 0: the block passes x through
    assert {"plain20", "resnet20"} <= set(list_models())
