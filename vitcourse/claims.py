"""Each chapter ends with a claims table: the paper's claim, the numbers this run measured, and
whether the claim held. The notebook computes ``holds`` from its measurements; nothing is typed in.

    claims = Claims("03_vision_transformer")
    claims.add("C3a", "learned position embeddings show 2-D structure",
               measured=f"same-row similarity {row:.2f} vs other {other:.2f}", holds=row > other)
    claims.show()

``show`` prints the table and saves it as markdown and JSON under ``$VITCOURSE_CLAIMS_DIR``
(default ``runs_root()/claims``); ``make course`` gathers them into ``build/claims.md``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._io import atomic_write_json, atomic_write_text
from .runtime import profile
from .workspace import runs_root


# Two-sided 95% critical values of Student's t by degrees of freedom: with a handful of seeds the
# noise estimate is itself noisy, and "two standard errors" would overclaim.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t_critical(dof: int) -> float:
    """How many standard errors a difference must reach to be real at 95% (two-sided), estimated
    from ``dof`` degrees of freedom (n - 1 for n paired runs). Between tabulated values the next
    smaller ``dof`` is used (a slightly stricter bar); beyond 30, the normal 1.96."""
    if dof < 1:
        raise ValueError(f"dof={dof}: a noise estimate needs at least 2 runs (1 degree of freedom)")
    if dof > 30:
        return 1.96
    return _T95[max(k for k in _T95 if k <= dof)]


@dataclass(frozen=True)
class Paired:
    """``a - b`` judged over paired runs (seed ``i`` of ``a`` and of ``b`` share initial weights and data
    order, so the noise of the difference is the spread of the per-seed differences, not of each arm)."""
    diffs: tuple
    mean: float
    se: float            # standard error of the mean difference (inf with a single pair)
    t_crit: float        # the number of standard errors 95% needs with len(diffs) - 1 degrees of freedom

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def real(self) -> bool:
        """The mean difference is more than ``t_crit`` standard errors from zero (two-sided, 95%)."""
        return abs(self.mean) > self.t_crit * self.se

    @property
    def half_width(self) -> float:
        """Half the 95% confidence interval of the mean difference."""
        return self.t_crit * self.se

    def judge(self, threshold: float) -> str:
        """The verdict on "a - b >= threshold": "shown" (mean at least the threshold, interval above 0),
        "below the threshold" (even the interval's upper end is below it), or "inconclusive" (the
        interval is too wide to tell: more seeds or less noise would be needed)."""
        if self.n >= 2 and self.mean >= threshold and self.real:
            return f"gain of {threshold} shown"
        if self.n >= 2 and self.mean + self.half_width < threshold:
            return f"below the threshold (95% upper end {self.mean + self.half_width:+.4f} < {threshold})"
        if self.n < 2:
            return "inconclusive (one seed: no noise estimate)"
        lo, hi = self.mean - self.half_width, self.mean + self.half_width
        return (f"inconclusive (95% interval {lo:+.4f} to {hi:+.4f}: it reaches {threshold} or above, so a gain of "
                f"{threshold} is not ruled out, and it is not shown)")

    def describe(self, unit: str = "") -> str:
        """One line: the per-seed differences, the mean with its 95% interval, and the verdict."""
        per_seed = ", ".join(f"{d:+.4f}" for d in self.diffs)
        if self.n < 2:
            return f"{self.mean:+.4f}{unit} from one seed: no noise estimate, no verdict"
        verdict = "a real difference" if self.real else "within the noise"
        return (f"{self.mean:+.4f}{unit} +- {self.half_width:.4f} (95%, {self.n} paired seeds: {per_seed}): "
                f"{abs(self.mean) / self.se if self.se else float('inf'):.1f} standard errors, {verdict}")


def paired(a, b) -> Paired:
    """Compare two arms run with the same seeds, ``a[i]`` against ``b[i]``: the mean of ``a - b``, its
    standard error from the spread of the differences, and Student's t for ``n - 1`` degrees of freedom."""
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) != len(b) or not a:
        raise ValueError(f"paired() needs the same, non-zero number of runs in both arms; got {len(a)} and {len(b)}"
                         " (run every arm with every seed)")
    diffs = tuple(x - y for x, y in zip(a, b))
    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return Paired(diffs, mean, float("inf"), float("inf"))
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return Paired(diffs, mean, (var / n) ** 0.5, t_critical(n - 1))


def late_window(steps, fraction: float = 0.2) -> tuple:
    """The (from, to) steps that ``late_rise`` compares: the last point of the curve at or before step
    ``(1 - fraction) * steps[-1]``, and the last point. With few evaluations the window is wider than
    ``fraction`` (e.g. evaluations at 234, 468, 702 and 936 read 702 to 936, the last 25%)."""
    steps = list(steps)
    if len(steps) < 2:
        raise ValueError(f"a late window needs a curve of at least 2 points; got {len(steps)} (evaluate more often "
                         "during training)")
    cut = (1 - fraction) * steps[-1]
    earlier = [s for s in steps if s <= cut]
    if not earlier:
        raise ValueError(f"no point of the curve lies at or before step {cut:g}: evaluate more often")
    return earlier[-1], steps[-1]


def late_rise(steps, values, fraction: float = 0.2) -> float:
    """How much ``values`` (a learning curve at ``steps``) rose over the last ``fraction`` of the steps:
    the last value minus the value at the start of ``late_window(steps, fraction)``. A run near
    convergence rises little there; "test accuracy rose less than 0.5 points over the last 20% of
    steps" is ``late_rise(steps, acc) < 0.005``."""
    steps, values = list(steps), list(values)
    if len(steps) != len(values) or len(steps) < 2:
        raise ValueError(f"late_rise needs a curve of at least 2 points with one value per step; got {len(steps)} "
                         f"steps and {len(values)} values (evaluate more often during training)")
    start, _ = late_window(steps, fraction)
    return values[-1] - values[max(i for i, s in enumerate(steps) if s <= start)]


def rise_noise(accuracy: float, images: int, runs: int = 1) -> float:
    """One standard deviation of ``late_rise`` from measurement noise alone: a curve point is an accuracy
    near ``accuracy`` measured on ``images`` images (binomial variance p(1 - p) / images), the rise is the
    difference of two such points, and a mean over ``runs`` curves divides the variance by ``runs``. A
    plateau threshold well below this cannot be told from noise; a rise several times it is a curve
    still climbing."""
    if images < 1 or runs < 1 or not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"need images >= 1, runs >= 1 and an accuracy in [0, 1]; got {images}, {runs}, {accuracy}")
    return (2 * accuracy * (1 - accuracy) / images / runs) ** 0.5


@dataclass(frozen=True)
class Regime:
    """A claim's pre-stated regime, checked on its runs: every arm near convergence (its mean test curve
    rose less than ``plateau`` over the last 20% of the steps) and, where ``overfit`` is given, limited by
    its data (clean training accuracy at least ``overfit`` above test accuracy)."""
    rise: dict                  # arm -> late_rise of its (mean) test-accuracy curve
    plateau: float
    gap: dict | None = None     # arm -> clean train - test accuracy
    overfit: float | None = None
    measure: str = "test accuracy"   # what the curves measure, for the report
    window: tuple | None = None      # the (from, to) steps the rise is read over (late_window)

    @property
    def converged(self) -> bool:
        return all(v < self.plateau for v in self.rise.values())

    @property
    def data_limited(self) -> bool:
        return self.gap is None or all(v >= self.overfit for v in self.gap.values())

    @property
    def reached(self) -> bool:
        return self.converged and self.data_limited

    def why_not(self) -> str:
        return ", ".join(w for w, ok in (("not converged", self.converged), ("not limited by data", self.data_limited))
                         if not ok)

    def report(self, claim: str) -> str:
        """One line per arm with both conditions, then the verdict for ``claim``."""
        lines, width = [], max(len(str(arm)) for arm in self.rise)
        where = (f"from step {self.window[0]:,} to {self.window[1]:,} (the evaluations bracketing the last 20% of steps; "
                 if self.window else "over the last 20% of steps (")
        for arm, rise in self.rise.items():
            line = f"{arm:{width}s} {self.measure} rose {rise:+.4f} {where}regime: < {self.plateau})"
            if self.gap is not None:
                line += f"; clean train - test {self.gap[arm]:+.4f} (regime: >= {self.overfit})"
            lines.append(line)
        verdict = f"near convergence: {'yes' if self.converged else 'NO'}"
        if self.gap is not None:
            verdict += f"; limited by data: {'yes' if self.data_limited else 'NO'}"
        lines.append(f"{verdict} -> the regime of {claim} {'is reached' if self.reached else 'is not reached'}")
        return "\n".join(lines)

    def note(self, measured: str) -> str:
        """A claim's measured text, prefixed with "regime not reached (why)" when it was not."""
        return measured if self.reached else f"regime not reached ({self.why_not()}): {measured}"


def regime(steps, curves: dict, plateau: float, gaps: dict | None = None, overfit: float | None = None,
           measure: str = "test accuracy") -> Regime:
    """Check a claim's regime from each arm's accuracy curve at ``steps`` (e.g. the mean over seeds; say
    what it measures with ``measure``, e.g. "validation accuracy") and, optionally, each arm's clean
    train - test accuracy."""
    from . import rehearsal
    if (gaps is None) != (overfit is None):
        raise ValueError("give both gaps and overfit (the data-limited condition) or neither")

    def rise(curve):
        if rehearsal.active() and min(len(steps), len(curve)) < 2:
            return float("nan")  # a rehearsal cuts every run after its first stretch: no curve to judge
        return late_rise(steps, curve)
    try:
        window = late_window(steps)
    except ValueError:      # a rehearsal's cut curve (the rises above are nan); a real short curve raised already
        window = None
    return Regime({arm: rise(c) for arm, c in curves.items()}, plateau, gaps, overfit, measure, window)


@dataclass
class Claim:
    id: str
    claim: str
    measured: str
    holds: bool | None  # None: not judged in this run (e.g. an optional section left out of the profile)

    @property
    def verdict(self) -> str:
        if self.holds is None:
            return "not judged"
        if self.holds:
            return "yes"
        return "NO (regime not reached)" if "regime not reached" in self.measured else "NO"


@dataclass
class Claims:
    chapter: str
    rows: list[Claim] = field(default_factory=list)

    def add(self, id: str, claim: str, measured: str, holds: bool | None) -> None:
        """One row; ``holds=None`` records a claim that this run did not judge (say why in ``measured``)."""
        row = Claim(id, claim, measured, None if holds is None else bool(holds))
        self.rows = [r for r in self.rows if r.id != id] + [row]  # re-running a cell replaces its row

    def markdown(self) -> str:
        p = profile()
        head = f"### Claims of {self.chapter} (profile: {p})"
        if p == "smoke":
            head += "\n\n_Smoke profile: tiny synthetic runs that only check the code; these numbers are not evidence._"
        lines = [head, "", "| id | claim | measured | holds |", "|---|---|---|---|"]
        lines += [f"| {r.id} | {r.claim} | {r.measured} | {r.verdict} |" for r in self.rows]
        return "\n".join(lines)

    def show(self) -> None:
        """Print the table and save it (markdown and JSON) for ``make course``."""
        text = self.markdown()
        print(text)
        folder = Path(os.environ.get("VITCOURSE_CLAIMS_DIR") or runs_root() / "claims")
        atomic_write_text(text + "\n", folder / f"{self.chapter}.md")
        atomic_write_json({"chapter": self.chapter, "profile": profile(),
                           "claims": [asdict(r) for r in self.rows]}, folder / f"{self.chapter}.json")


def gather(folder, out) -> str:
    """Concatenate every chapter's saved table (in chapter order) into one markdown file."""
    parts = [p.read_text() for p in sorted(Path(folder).glob("*.md"))]
    text = "# Claims measured by this run of the course\n\n" + "\n\n".join(parts)
    atomic_write_text(text, out)
    return text


if __name__ == "__main__":  # python -m vitcourse.claims FOLDER OUT
    import sys
    print(gather(sys.argv[1], sys.argv[2]))
