"""Knowledge distillation from a CNN teacher (DeiT, Touvron et al. 2021, section 4).

Soft distillation (eq. 2, after Hinton et al. 2015): match the teacher's softened distribution,

    L = (1 - lambda) CE(psi(Z_s), y) + lambda tau^2 KL(psi(Z_t / tau) || psi(Z_s / tau)),

with psi the softmax, Z_s and Z_t the student's and teacher's logits, tau the temperature (3.0) and
lambda the weight (0.1). Hard-label distillation (eq. 3): take the teacher's top class
y_t = argmax_c Z_t(c) as a second label,

    L = 1/2 CE(psi(Z_s), y) + 1/2 CE(psi(Z_s), y_t).

With a distillation token (``ViTConfig(prefix="cls_dist")``) the class head learns from y and the
distillation head from the teacher; without one, the class head takes both terms.
"""
from __future__ import annotations

import hashlib
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import describe_model
from .data.images import ImageData
from .data.loader import DeviceLoader, tensor_sha1


def _soft_kl(student_logits, teacher_logits, tau: float):
    """KL(softmax(teacher/tau) || softmax(student/tau)), summed over classes, averaged over the batch."""
    return F.kl_div(F.log_softmax(student_logits.float() / tau, dim=-1),
                    F.log_softmax(teacher_logits.float() / tau, dim=-1), reduction="batchmean", log_target=True)


def soft_distillation_loss(student_logits, teacher_logits, targets, tau: float = 3.0, alpha: float = 0.1,
                           dist_logits=None, label_smoothing: float = 0.0):
    """DeiT eq. 2: (1 - alpha) CE(student, y) + alpha tau^2 KL(softmax(teacher/tau) || softmax(student/tau)),
    averaged over the batch. ``targets``: class indices, or soft (MixUp) targets. With ``dist_logits``
    (a distillation token's head) the KL term is on those instead of on ``student_logits``.
    ``label_smoothing`` (none unless asked) applies to the label term."""
    ce = F.cross_entropy(student_logits.float(), targets, label_smoothing=label_smoothing)
    kl = _soft_kl(student_logits if dist_logits is None else dist_logits, teacher_logits, tau)
    return (1 - alpha) * ce + alpha * tau ** 2 * kl


def hard_distillation_loss(class_logits, dist_logits, teacher_logits, targets, label_smoothing: float = 0.0):
    """DeiT eq. 3: 1/2 CE(class head, y) + 1/2 CE(distillation head, argmax of the teacher).
    ``label_smoothing`` (none unless asked) applies to the label term only: DeiT smooths the true
    labels and leaves the teacher's pseudo-labels as they are (section 4, "Label smoothing")."""
    teacher_labels = teacher_logits.argmax(dim=-1)
    return (0.5 * F.cross_entropy(class_logits.float(), targets, label_smoothing=label_smoothing)
            + 0.5 * F.cross_entropy(dist_logits.float(), teacher_labels))


class DistillationLoss:
    """The loss hook of ``vitcourse.train.fit`` for distillation: ``fit(..., loss_fn=DistillationLoss(teacher))``.

    On every batch the teacher sees the same (augmented) images as the student, in eval mode, under
    ``torch.no_grad()``; ``fit`` runs the hook under the precision policy's autocast. ``kind`` is
    "hard" (eq. 3), "soft" (eq. 2) or "none" (the plain cross-entropy, for the baseline). A student
    with a distillation token gives (class, distillation) logits in training; a plain ViT gives one
    tensor, which then takes both terms. With "none", a two-token student learns the label with both
    heads (1/2 CE each): DeiT's control of two class tokens, the same architecture without a teacher.
    """

    def __init__(self, teacher: nn.Module, kind: str = "hard", tau: float = 3.0, alpha: float = 0.1,
                 label_smoothing: float = 0.0):
        """``label_smoothing`` applies to the label term only (DeiT: epsilon = 0.1 on the true labels,
        none on the teacher's)."""
        if kind not in ("hard", "soft", "none"):
            raise ValueError(f"kind={kind!r}: use 'hard' (DeiT eq. 3), 'soft' (eq. 2) or 'none'")
        self.teacher, self.kind, self.tau, self.alpha = teacher, kind, tau, alpha
        self.label_smoothing = label_smoothing
        teacher.eval()
        teacher.requires_grad_(False)  # the teacher is fixed: no gradient, no optimizer state
        # What a resumed run must match: the settings and the teacher, its weights included.
        weights = tensor_sha1(*teacher.state_dict().values())
        self.fingerprint = (f"DistillationLoss(kind={kind}, tau={tau}, alpha={alpha}, label_smoothing="
                            f"{label_smoothing}, teacher={describe_model(teacher)}, weights_sha1={weights})")

    @torch.no_grad()
    def teacher_logits(self, inputs):
        self.teacher.eval()  # even if someone called .train() on it in between
        tensor = next(itertools.chain(self.teacher.parameters(), self.teacher.buffers()))  # its weights or its logits
        if tensor.device != inputs.device:
            self.teacher.to(inputs.device)
        return self.teacher(inputs)

    def __call__(self, outputs, targets, inputs):
        class_logits, dist_logits = outputs if isinstance(outputs, (tuple, list)) else (outputs, outputs)
        if self.kind == "none":
            ce = F.cross_entropy(class_logits.float(), targets, label_smoothing=self.label_smoothing)
            if dist_logits is class_logits:
                return ce
            return 0.5 * ce + 0.5 * F.cross_entropy(dist_logits.float(), targets, label_smoothing=self.label_smoothing)
        teacher = self.teacher_logits(inputs)
        if self.kind == "hard":
            return hard_distillation_loss(class_logits, dist_logits, teacher, targets, self.label_smoothing)
        # Soft: the class head takes the label term, the distillation head the teacher term.
        return soft_distillation_loss(class_logits, teacher, targets, self.tau, self.alpha, dist_logits=dist_logits,
                                      label_smoothing=self.label_smoothing)


class PrecomputedTeacher(nn.Module):
    """A teacher's logits computed once for every image of a data set, then looked up by image.

    ``DistillationLoss(PrecomputedTeacher(teacher, train_data))`` trains exactly like
    ``DistillationLoss(teacher)`` without running the teacher on every batch of every epoch. This is
    valid only when the student sees exactly the images the teacher saw: **no augmentation** (no
    random crop, flip, RandAugment, MixUp or CutMix). An augmented image is a new image, whose
    teacher logits were never computed; it is looked up by its content, so it raises an error
    instead of silently getting another image's logits. DeiT itself augments heavily and runs the
    teacher on every batch.
    """

    def __init__(self, teacher: nn.Module, data: ImageData, batch_size: int = 500, device=None):
        super().__init__()
        rows, logits, n = {}, [], 0
        teacher.eval()
        loader = DeviceLoader(data, batch_size, shuffle=False, device=device)  # the training normalisation
        with torch.no_grad():
            for x, _ in loader:
                for image in x.cpu():
                    rows.setdefault(self._key(image), n)  # an exact duplicate image keeps its first row
                    n += 1
                logits.append(teacher(x).float().cpu())
        self._rows = rows
        self.register_buffer("logits", torch.cat(logits))
        self.description = f"PrecomputedTeacher({describe_model(teacher)}, {len(data)} images)"

    @staticmethod
    def _key(image: torch.Tensor) -> bytes:
        return hashlib.sha1(image.contiguous().numpy().tobytes()).digest()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rows = [self._rows.get(self._key(image)) for image in images.detach().cpu()]
        missing = sum(r is None for r in rows)
        if missing:
            raise ValueError(
                f"{missing} of {len(rows)} images in this batch are not among the {len(self.logits)} images "
                "whose teacher logits were precomputed: the batch was augmented (random crop, flip, "
                "RandAugment, MixUp/CutMix) or comes from another data set. Precomputed logits are valid only "
                "for un-augmented training; pass the teacher itself to DistillationLoss instead.")
        return self.logits[torch.tensor(rows, device=self.logits.device)].to(images.device)
