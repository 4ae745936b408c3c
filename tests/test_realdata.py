"""A real-data check: the course ResNet learns Fashion-MNIST (skipped where the data is absent)."""
import torch

from vitcourse.data import DeviceLoader, load
from vitcourse.models import create_model
from vitcourse.runtime import seed_everything
from vitcourse.train import evaluate, fit


def test_resnet_reaches_85_percent_on_fashion_mnist(fashion_mnist_available):
    seed_everything(0)
    train, test = load("fashion_mnist", "train"), load("fashion_mnist", "test")
    model = create_model("resnet8", num_classes=10, in_channels=1)
    fit(model, DeviceLoader(train, 256, seed=0, device="cpu"), epochs=1, lr=5e-3, warmup_epochs=0.1,
        progress=False, device="cpu")
    acc = evaluate(model, DeviceLoader(test, 1000, shuffle=False, device="cpu"))["acc"]
    assert len(test) == 10_000
    assert acc >= 0.85, f"test accuracy {acc:.3f} on the full test split"
