"""Transfer learning (ViT section 3.2 and 4.2; seed 003's table): pre-train, then fine-tune on a new task.

Two ways to get a pre-trained ViT:

* ``pretrained_vit("vit_b_32")``: torchvision's public ImageNet-1k weights, converted to our ViT with
  ``vit_from_torchvision``, its head replaced by a zero-initialised one for the new classes. This
  downloads about 350 MB, so it needs a network (Colab); without one it returns ``(None, reason)``
  instead of raising, and the notebook takes the offline way.
* Offline, the same lesson with no download: ``split_classes`` cuts a data set into two halves of its
  classes; pre-train on one half, fine-tune on a few labelled images of the other half.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from . import rehearsal
from .data.images import ImageData
from .models.convert import vit_from_torchvision

TORCHVISION_WEIGHTS = {"vit_b_16": "ViT_B_16_Weights", "vit_b_32": "ViT_B_32_Weights"}


def pretrained_vit(arch: str = "vit_b_32", num_classes: int | None = None):
    """(our ViT with torchvision's ImageNet-1k weights, None), or (None, the reason) when the weights
    cannot be had (no network, a proxy, a broken download). With ``num_classes`` the 1000-class head
    is replaced by a zero-initialised one. The model expects 224 x 224 images. In a rehearsal
    (``vitcourse.rehearsal``) the weights are random: the same model, no download."""
    import torchvision
    if arch not in TORCHVISION_WEIGHTS:
        raise ValueError(f"unknown arch {arch!r}; use one of {', '.join(TORCHVISION_WEIGHTS)}")
    weights = getattr(torchvision.models, TORCHVISION_WEIGHTS[arch]).IMAGENET1K_V1
    if rehearsal.active():  # the gpu profile's model without the download: random weights, same shapes
        weights = None
    try:
        reference = getattr(torchvision.models, arch)(weights=weights)
    except Exception as err:  # URLError, HTTPError, a hash mismatch, a full disk...
        return None, (f"could not download torchvision's {arch} ImageNet weights ({type(err).__name__}: "
                      f"{str(err)[:160]}); using the offline variant instead (pre-train on half the classes)")
    model = vit_from_torchvision(reference)
    if num_classes is not None:
        model.reset_head(num_classes)
    return model, None


def split_classes(data: ImageData, classes) -> ImageData:
    """The images of ``classes`` only, relabelled 0..len(classes)-1 in the order given (so a model
    with len(classes) outputs can be trained on them). Mean and std stay those of the full set."""
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes) or not all(0 <= c < len(data.classes) for c in classes):
        raise ValueError(f"classes must be distinct indices in 0..{len(data.classes) - 1}, got {classes}")
    lookup = torch.full((len(data.classes),), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = lookup[data.labels] >= 0
    return replace(data, images=data.images[keep], labels=lookup[data.labels[keep]],
                   classes=[data.classes[c] for c in classes])
