"""DeiT: the distillation token, the two distillation losses, the teacher hook, timm parity."""
import math

import pytest
import torch
import torch.nn as nn

from vitcourse.data import DeviceLoader, synthetic
from vitcourse.distill import (DistillationLoss, PrecomputedTeacher, hard_distillation_loss,
                              soft_distillation_loss)
from vitcourse.models import create_model
from vitcourse.models.vit import ViT, ViTConfig

SMALL = dict(image_size=16, patch_size=4, in_channels=3, num_classes=3, dim=16, depth=1, num_heads=2)


def test_soft_loss_against_a_hand_computed_value():
    s, t, y = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 3.0, 0.0]]), torch.tensor([0])
    tau, alpha = 3.0, 0.1
    ce = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1)))
    ps = [math.exp(v / tau) for v in (2.0, 0.0, -1.0)]
    ps = [v / sum(ps) for v in ps]
    pt = [math.exp(v / tau) for v in (0.0, 3.0, 0.0)]
    pt = [v / sum(pt) for v in pt]
    kl = sum(a * math.log(a / b) for a, b in zip(pt, ps))
    expected = (1 - alpha) * ce + alpha * tau ** 2 * kl
    assert soft_distillation_loss(s, t, y, tau, alpha).item() == pytest.approx(expected, rel=1e-5)
    # A student equal to the teacher has KL 0: the loss is (1 - alpha) CE.
    assert soft_distillation_loss(t, t, y, tau, alpha).item() == pytest.approx(
        0.9 * nn.functional.cross_entropy(t, y).item(), rel=1e-5)


def test_hard_loss_against_a_hand_computed_value():
    cls_logits, dist_logits = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    teacher, y = torch.tensor([[0.1, 5.0, 0.2]]), torch.tensor([0])   # the teacher says class 1
    ce = lambda z, k: -math.log(math.exp(z[k]) / sum(math.exp(v) for v in z))  # noqa: E731
    expected = 0.5 * ce([1.0, 0.0, 0.0], 0) + 0.5 * ce([0.0, 2.0, 0.0], 1)
    assert hard_distillation_loss(cls_logits, dist_logits, teacher, y).item() == pytest.approx(expected, rel=1e-6)


def test_distillation_token_gives_two_heads_in_training_and_their_average_in_eval():
    torch.manual_seed(0)
    model = ViT(ViTConfig(**SMALL, prefix="cls_dist"))
    x = torch.randn(2, 3, 16, 16)
    cls_logits, dist_logits = model.train()(x)
    assert cls_logits.shape == dist_logits.shape == (2, 3) and model.num_prefix_tokens == 2
    model.eval()
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)  # no dropout here: same forward
    assert {"prefix.cls_token", "prefix.dist_token"} <= model.no_weight_decay()


def test_distillation_head_is_trained_by_the_distillation_term_only():
    torch.manual_seed(0)
    student = ViT(ViTConfig(**SMALL, prefix="cls_dist")).train()
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    cls_logits, dist_logits = student(x)
    t = teacher(x).detach()
    # The label term alone: no gradient reaches the distillation head; the teacher term alone: none
    # reaches the class head.
    nn.functional.cross_entropy(cls_logits, y).backward(retain_graph=True)
    assert student.prefix.head_dist.weight.grad is None or not student.prefix.head_dist.weight.grad.any()
    assert student.head.weight.grad.abs().sum() > 0
    student.zero_grad()
    nn.functional.cross_entropy(dist_logits, t.argmax(-1)).backward()
    assert student.head.weight.grad is None or not student.head.weight.grad.any()
    assert student.prefix.head_dist.weight.grad.abs().sum() > 0


def by_hand(kind, outputs, teacher_logits, y, tau=3.0, alpha=0.1):
    """DeiT's losses written out with torch's plain cross-entropy and an explicit KL sum: eq. 3 (hard),
    eq. 2 with the KL term on the distillation head (soft), or the label on both heads (none: two class tokens)."""
    ce = nn.functional.cross_entropy
    cls_logits, dist_logits = outputs
    if kind == "none":
        return 0.5 * ce(cls_logits, y) + 0.5 * ce(dist_logits, y)
    if kind == "hard":
        return 0.5 * ce(cls_logits, y) + 0.5 * ce(dist_logits, teacher_logits.argmax(-1))
    p_t = (teacher_logits / tau).softmax(-1)
    kl = (p_t * (p_t.log() - (dist_logits / tau).log_softmax(-1))).sum(-1).mean()
    return (1 - alpha) * ce(cls_logits, y) + alpha * tau ** 2 * kl


@pytest.mark.parametrize("kind", ["hard", "soft", "none"])
def test_teacher_gets_no_gradient_and_stays_in_eval_mode(kind):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.LazyLinear(3))
    teacher(torch.randn(2, 3, 16, 16))  # materialise the lazy layer
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    loss_fn = DistillationLoss(teacher, kind=kind)
    student = ViT(ViTConfig(**SMALL, prefix="cls_dist")).train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    teacher.train()  # someone flips it back: the loss puts it in eval mode again before using it
    out = student(x)
    loss = loss_fn(out, y, x)
    loss.backward(retain_graph=True)
    assert all(p.grad is None for p in teacher.parameters())
    assert all(not p.requires_grad for p in teacher.parameters())
    if kind != "none":
        assert not teacher.training
        # eval mode: the batch-norm running statistics did not move
        assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    # The loss is the eval-mode teacher's (no dropout, running statistics), computed here by hand,
    # and the same again after another flip to training mode.
    with torch.no_grad():
        t = teacher.eval()(x)
    torch.testing.assert_close(loss, by_hand(kind, out, t, y))
    teacher.train()
    torch.testing.assert_close(loss_fn(out, y, x), loss)


def test_soft_distillation_goes_through_the_distillation_token_head():
    """kind="soft" with a distillation token: the KL term to the teacher is on the distillation head,
    the label term on the class head (alpha=1 leaves the class head without gradient, alpha=0 the
    distillation head)."""
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    for alpha, idle, trained in ((1.0, "head", "prefix.head_dist"), (0.0, "prefix.head_dist", "head")):
        student = ViT(ViTConfig(**SMALL, prefix="cls_dist")).train()
        out = student(x)
        loss = DistillationLoss(teacher, kind="soft", tau=2.0, alpha=alpha)(out, y, x)
        torch.testing.assert_close(loss, by_hand("soft", out, teacher(x).detach(), y, tau=2.0, alpha=alpha))
        loss.backward()
        grads = {n: p.grad for n, p in student.named_parameters()}
        assert grads[f"{idle}.weight"] is None or not grads[f"{idle}.weight"].any()
        assert grads[f"{trained}.weight"].abs().sum() > 0


def test_a_plain_vit_takes_both_terms_on_its_class_head():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    student = ViT(ViTConfig(**SMALL)).train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    out = student(x)
    expected = hard_distillation_loss(out, out, teacher(x), y)
    torch.testing.assert_close(DistillationLoss(teacher, "hard")(out, y, x), expected)


def test_deit_conversion_from_timm_matches_logits(timm):
    from vitcourse.models.convert import UnsupportedReference, deit_from_timm, vit_from_timm
    torch.manual_seed(0)
    ref = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=7).eval()
    with torch.no_grad():
        for p in ref.parameters():  # random everything, so that no part can be mis-copied unnoticed
            p.normal_(0, 0.05)
    ours = deit_from_timm(ref)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)
    assert ours.num_prefix_tokens == 2
    with pytest.raises(UnsupportedReference, match="deit_from_timm"):
        vit_from_timm(ref)
    with pytest.raises(UnsupportedReference, match="VisionTransformerDistilled"):
        deit_from_timm(timm.create_model("vit_tiny_patch16_224", pretrained=False))


def test_registered_deit_configs():
    with torch.device("meta"):
        assert sum(p.numel() for p in create_model("deit_tiny_distilled_patch16_224").parameters()) == 5_910_800
    model = create_model("deit_fashion_patch7_28")
    assert model.config.prefix == "cls_dist" and model.eval()(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ValueError, match="pool='cls'"):
        ViTConfig(**SMALL, prefix="cls_dist", pool="mean")


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_precomputed_teacher_gives_the_teachers_loss_and_refuses_augmented_images(kind):
    torch.manual_seed(0)
    data = synthetic("train", n=40, image_size=16, channels=3, num_classes=3)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    student = ViT(ViTConfig(**SMALL)).train()
    live, cached = DistillationLoss(teacher, kind=kind), DistillationLoss(PrecomputedTeacher(teacher, data, 16), kind=kind)
    x, y = next(iter(DeviceLoader(data, 8, seed=1)))          # shuffled, not augmented
    out = student(x)
    torch.testing.assert_close(cached(out, y, x), live(out, y, x))
    assert cached.fingerprint != live.fingerprint             # a resumed run cannot mix the two
    flipped, _ = next(iter(DeviceLoader(data, 8, seed=1, flip=True)))
    changed = ~(flipped == x).flatten(1).all(1)
    assert changed.any()
    with pytest.raises(ValueError, match="augmented"):
        cached(student(flipped), y, flipped)


def test_label_smoothing_touches_the_true_label_only():
    """DeiT smooths the true labels (epsilon 0.1) and not the teacher's pseudo-labels."""
    torch.manual_seed(0)
    ce = nn.functional.cross_entropy
    c, d, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 4), torch.randint(0, 4, (6,))
    expected = 0.5 * ce(c, y, label_smoothing=0.1) + 0.5 * ce(d, t.argmax(-1))
    torch.testing.assert_close(hard_distillation_loss(c, d, t, y, label_smoothing=0.1), expected)
    smoothed_both = 0.5 * ce(c, y, label_smoothing=0.1) + 0.5 * ce(d, t.argmax(-1), label_smoothing=0.1)
    assert not torch.allclose(hard_distillation_loss(c, d, t, y, label_smoothing=0.1), smoothed_both)


def test_without_a_teacher_a_one_token_student_gets_plain_cross_entropy():
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 3))
    z, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(DistillationLoss(teacher, kind="none")(z, y, torch.randn(4, 3, 16, 16)),
                               nn.functional.cross_entropy(z, y))
