"""Chapter 04's checked exercises: MixUp, label smoothing, and the paired comparison that judges a
study over seeds.

    from vitcourse.exercises import ch04
    ch04.mixup.check(mixup)
"""
from __future__ import annotations

import torch

from ..claims import t_critical
from ._core import Case, Exercise, Mistake


# ---- reference solutions -------------------------------------------------------------------------------
def mixup_solution(images, labels, lam, perm):
    """MixUp (Zhang et al. 2018): lam x + (1 - lam) x[perm], and the same for the one-hot labels."""
    return lam * images + (1 - lam) * images[perm], lam * labels + (1 - lam) * labels[perm]


def smoothed_targets_solution(labels: torch.Tensor, num_classes: int, eps: float) -> torch.Tensor:
    """Label smoothing as ``F.cross_entropy(label_smoothing=eps)``: (1 - eps) on the true class, and eps
    spread evenly over all K classes (the true one included)."""
    return (1 - eps) * torch.nn.functional.one_hot(labels, num_classes).float() + eps / num_classes


def paired_difference_solution(a: list, b: list) -> tuple:
    """Mean of a - b over paired seeds and the half-width of its 95% interval: Student's t for n - 1
    degrees of freedom times the standard error (the differences' sample standard deviation / sqrt n)."""
    from vitcourse.claims import t_critical
    diffs = [x - y for x, y in zip(a, b)]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = (sum((d - mean) ** 2 for d in diffs) / (n - 1)) ** 0.5
    return mean, t_critical(n - 1) * sd / n ** 0.5


# ---- known mistakes ------------------------------------------------------------------------------------
def _labels_unmixed(images, labels, lam, perm):
    return lam * images + (1 - lam) * images[perm], labels


def _lam_swapped(images, labels, lam, perm):
    return (1 - lam) * images + lam * images[perm], (1 - lam) * labels + lam * labels[perm]


def _off_class_only(labels, num_classes, eps):
    one_hot = torch.nn.functional.one_hot(labels, num_classes).float()
    return one_hot * (1 - eps) + (1 - one_hot) * eps / (num_classes - 1)


def _normal_quantile(a, b):
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    return d.mean().item(), 1.96 * (d.std() / len(d) ** 0.5).item()


def _population_sd(a, b):
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    return d.mean().item(), t_critical(len(d) - 1) * (d.std(correction=0) / len(d) ** 0.5).item()


def _unpaired(a, b):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    se = (a.var() / len(a) + b.var() / len(b)) ** 0.5
    return (a - b).mean().item(), t_critical(len(a) - 1) * se.item()


def _mix_case(b, c, h, k, lam):
    def make():
        gen = torch.Generator().manual_seed(b * h)
        labels = torch.nn.functional.one_hot(torch.randint(0, k, (b,), generator=gen), k).float()
        return torch.randn(b, c, h, h, generator=gen), labels, lam, torch.randperm(b, generator=gen)
    return Case(f"batch {b}, {c}x{h}x{h} images, {k} classes, lam={lam}", make)


def _smooth_case(labels, k, eps):
    return Case(f"labels {labels}, {k} classes, eps={eps}", lambda: (torch.tensor(labels), k, eps))


def _paired_case(a, b):
    return Case(f"a={a}, b={b}", lambda: (list(a), list(b)))


mixup = Exercise(
    "mixup", mixup_solution,
    cases=[_mix_case(*c) for c in ((4, 3, 8, 10, 0.7), (2, 1, 5, 3, 0.5), (6, 2, 4, 5, 0.9))],
    hints=["images[perm] is the batch in another order: each image gets a partner.",
           "The labels are mixed with the same lam as the images: the target says how much of each class is there."],
    mistakes=[Mistake(_labels_unmixed, "the labels are not mixed: a 70/30 blend of two images has a 70/30 target."),
              Mistake(_lam_swapped, "lam and 1 - lam are swapped: lam weighs the original batch, 1 - lam its partners.")],
    shape_formula="(B, C, H, W); (B, K)", grad=True)

smoothed_targets = Exercise(
    "smoothed_targets", smoothed_targets_solution,
    cases=[_smooth_case(*c) for c in (([0, 2, 1], 3, 0.1), ([4], 5, 0.2), ([1, 1], 2, 0.0))],
    hints=["Start from the one-hot targets, then move eps of the probability mass.",
           "PyTorch's label_smoothing spreads eps over all K classes, the true one too: eps / K each."],
    mistakes=[Mistake(_off_class_only, "eps is spread over the K - 1 wrong classes only; PyTorch (and the course's "
                                       "recipe) spreads it over all K, so the true class gets 1 - eps + eps/K.")],
    shape_formula="(B, K)")

paired_difference = Exercise(
    "paired_difference", paired_difference_solution,
    cases=[_paired_case(*c) for c in (((0.9, 0.8, 0.85), (0.7, 0.75, 0.7)), ((0.5, 0.6), (0.4, 0.45)),
                                      ((0.81, 0.84, 0.80, 0.86, 0.83), (0.80, 0.80, 0.79, 0.82, 0.80)))],
    hints=["Take the per-seed differences first: the noise of a paired comparison is their spread.",
           "The standard error is their sample standard deviation (n - 1 in the denominator) over sqrt(n).",
           "With a handful of seeds, 95% needs Student's t for n - 1 degrees of freedom "
           "(vitcourse.claims.t_critical), not 1.96."],
    mistakes=[Mistake(_normal_quantile, "1.96 is the normal distribution's value; with n seeds the noise estimate is "
                                        "itself noisy and 95% needs t_critical(n - 1) (4.30 for 3 seeds)."),
              Mistake(_unpaired, "that is the unpaired standard error (each arm's variance): seed i of both arms "
                                 "shares its initial weights, so use the spread of the differences."),
              Mistake(_population_sd, "the standard deviation divides by n; the sample standard deviation of n "
                                      "differences divides by n - 1 (one degree of freedom goes to their mean).")],
    atol=1e-6, rtol=1e-3)   # 1e-3: the exact t quantile (4.30265 for 2 dof) passes as well as the table's 4.303

EXERCISES = [mixup, smoothed_targets, paired_difference]
