"""Chapter 05's checked exercises: DeiT's distillation losses (Touvron et al. 2021, eq. 2-3) and its
late-fusion prediction.

    from vitcourse.exercises import ch05
    ch05.soft_distillation.check(soft_distillation)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distill import _soft_kl
from ._core import Case, Exercise, Mistake, seeded as _seeded


# ---- reference solutions -------------------------------------------------------------------------------
def soft_distillation_solution(student_logits, teacher_logits, tau):
    """DeiT eq. 2's distillation term: tau^2 KL(softmax(teacher / tau) || softmax(student / tau)), summed
    over classes and averaged over the batch (the tau^2 keeps its gradients' scale as tau grows)."""
    log_p_teacher = F.log_softmax(teacher_logits / tau, dim=-1)
    log_p_student = F.log_softmax(student_logits / tau, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    return tau ** 2 * kl


def hard_distillation_solution(class_logits, dist_logits, teacher_logits, targets):
    """DeiT eq. 3: 1/2 CE(class head, y) + 1/2 CE(distillation head, y_t), y_t = argmax of the teacher."""
    return 0.5 * F.cross_entropy(class_logits, targets) + 0.5 * F.cross_entropy(dist_logits, teacher_logits.argmax(-1))


def late_fusion_solution(class_logits, dist_logits):
    """DeiT's prediction at test time: the mean of the two heads' softmax outputs, (B, K) probabilities."""
    return (class_logits.softmax(-1) + dist_logits.softmax(-1)) / 2


# ---- known mistakes ------------------------------------------------------------------------------------
def _no_tau_squared(student_logits, teacher_logits, tau):
    return _soft_kl(student_logits, teacher_logits, tau)


def _reversed_kl(student_logits, teacher_logits, tau):
    return tau ** 2 * _soft_kl(teacher_logits, student_logits, tau)


def _summed_over_batch(student_logits, teacher_logits, tau):
    return tau ** 2 * _soft_kl(student_logits, teacher_logits, tau) * student_logits.shape[0]


def _kl_mean(student_logits, teacher_logits, tau):
    # F.kl_div's default reduction="mean" averages over every element: the batch mean divided by K
    return tau ** 2 * _soft_kl(student_logits, teacher_logits, tau) / student_logits.shape[-1]


def _heads_swapped(class_logits, dist_logits, teacher_logits, targets):
    return 0.5 * F.cross_entropy(dist_logits, targets) + 0.5 * F.cross_entropy(class_logits, teacher_logits.argmax(-1))


def _teacher_soft(class_logits, dist_logits, teacher_logits, targets):
    return 0.5 * F.cross_entropy(class_logits, targets) + 0.5 * F.cross_entropy(dist_logits, teacher_logits.softmax(-1))


def _mean_logits(class_logits, dist_logits):
    return ((class_logits + dist_logits) / 2).softmax(-1)


def _logit_average(class_logits, dist_logits):
    return (class_logits + dist_logits) / 2


def _softmax_sum(class_logits, dist_logits):
    return class_logits.softmax(-1) + dist_logits.softmax(-1)



def _soft_case(b, k, tau):
    return Case(f"batch {b}, {k} classes, tau={tau}", lambda: (_seeded(b, k, seed=1), 3 * _seeded(b, k, seed=2), tau))


def _hard_case(b, k):
    return Case(f"batch {b}, {k} classes",
                lambda: (_seeded(b, k, seed=1), _seeded(b, k, seed=2), 3 * _seeded(b, k, seed=3),
                         torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(4))))


def _fusion_case(b, k):
    return Case(f"batch {b}, {k} classes", lambda: (2 * _seeded(b, k, seed=1), 5 * _seeded(b, k, seed=2)))


soft_distillation = Exercise(
    "soft_distillation", soft_distillation_solution,
    cases=[_soft_case(*c) for c in ((4, 10, 3.0), (1, 3, 1.0), (8, 5, 4.0))],
    hints=["KL(p || q) = sum_k p_k (log p_k - log q_k), with p the teacher's softened distribution.",
           "F.kl_div(log q, log p, log_target=True, reduction='batchmean') computes KL(p || q) averaged over the batch.",
           "Multiply by tau^2."],
    mistakes=[Mistake(_no_tau_squared, "the tau^2 factor is missing: dividing the logits by tau shrinks the gradients "
                                       "by 1/tau^2, and DeiT (after Hinton et al.) multiplies it back."),
              Mistake(_reversed_kl, "the KL runs the wrong way: it is KL(teacher || student), the teacher's "
                                    "distribution as the target."),
              Mistake(_summed_over_batch, "the KL is summed over the batch; average it (reduction='batchmean')."),
              Mistake(_kl_mean, "F.kl_div's default reduction='mean' averages over classes too (it divides by K): "
                                "use reduction='batchmean', the KL per image averaged over the batch.")],
    grad=True, grad_args=("student_logits",))

hard_distillation = Exercise(
    "hard_distillation", hard_distillation_solution,
    cases=[_hard_case(*c) for c in ((4, 10), (1, 3), (6, 5))],
    hints=["The teacher's hard decision is its argmax: y_t = teacher_logits.argmax(-1).",
           "The class head learns from the label, the distillation head from y_t, each with weight 1/2."],
    mistakes=[Mistake(_heads_swapped, "the heads are swapped: the class head learns the true label, the distillation "
                                      "head the teacher's decision."),
              Mistake(_teacher_soft, "that uses the teacher's probabilities (soft distillation's target); hard "
                                     "distillation takes its argmax.")],
    grad=True, grad_args=("class_logits", "dist_logits"))

late_fusion = Exercise(
    "late_fusion", late_fusion_solution,
    cases=[_fusion_case(*c) for c in ((4, 10), (1, 2), (3, 5))],
    hints=["Each head gives a distribution over the classes: softmax each, then average."],
    mistakes=[Mistake(_mean_logits, "that averages the logits before one softmax; DeiT adds the two heads' softmax "
                                    "outputs."),
              Mistake(_logit_average, "that is the mean of the two heads' logits, what DeiT's code and this course's "
                                      "model return at inference: it ranks the classes almost always as the paper's "
                                      "rule does, but the exercise asks for the paper's rule, the mean of the two "
                                      "softmax outputs, which are probabilities."),
              Mistake(_softmax_sum, "the two softmax outputs are added but not halved: their mean is a distribution "
                                    "(each row sums to 1).")],
    shape_formula="(B, K)", grad=True)

EXERCISES = [soft_distillation, hard_distillation, late_fusion]
