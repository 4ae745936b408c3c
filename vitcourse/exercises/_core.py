"""Checked exercises: a learner's function is run on a few cases and compared with the reference
solution, and the first thing that differs is explained in words the learner can act on.

    from vitcourse.exercises import ch03
    def patchify(images, patch_size):
        raise NotImplementedError          # the stub cell the learner edits
    ch03.patchify.check(patchify)           # "not attempted yet" until it is written
    ch03.patchify.hint()                    # the next hint, one more each call
    ch03.patchify.solution()                # the reference solution's source

``check`` never raises: it prints a verdict and returns True or False. What it reports, in order:
the case that failed first (by its inputs' shapes and settings); a wrong type, dtype or shape
(expected and got, with the formula of the expected shape); for boolean masks the first (query, key)
pair that is wrong and what the answer allows there; for values the number of mismatches, the largest
difference, where it is, and the tolerance; and, when the answer equals a known mistake (a missing
transpose, a softmax over the wrong axis), the message written for that mistake.
"""
from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass(frozen=True)
class Case:
    """One set of inputs: ``make()`` builds fresh arguments (so a learner's in-place edit cannot
    change the next case), ``describe`` names the case in feedback ("batch 1, 28x28, P=4")."""
    describe: str
    make: Callable[[], tuple]


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: ``fn`` computes it, ``message`` says what went wrong and how to fix it."""
    fn: Callable
    message: str


def seeded(*shape, seed: int) -> torch.Tensor:
    """A standard-normal tensor of ``shape`` from its own generator: the same case on every call."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _shape(x) -> str:
    return str(tuple(x.shape))


def _a(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


QUERY_KEY = ("query", "key", "True means the query may attend to the key")


def compare(got, expected, *, atol: float = 1e-5, rtol: float = 1e-4, shape_formula: str = "",
            what: str = "the answer", mask_words: tuple = QUERY_KEY) -> str | None:
    """None when ``got`` matches ``expected``; otherwise one paragraph on the first difference: type,
    then dtype and shape, then the values (masks: the first wrong entry, named by ``mask_words``: what
    its rows and columns are, and what True means)."""
    if isinstance(expected, tuple):
        if not isinstance(got, tuple) or len(got) != len(expected):
            n = len(got) if isinstance(got, tuple) else None
            return (f"{what} should be a tuple of {len(expected)} values, got "
                    + (f"a tuple of {n}" if n is not None else _a(type(got).__name__)))
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, atol=atol, rtol=rtol, what=f"output {i}", mask_words=mask_words,
                              shape_formula=shape_formula.split(";")[i].strip() if ";" in shape_formula else "")
            if problem:
                return problem
        return None
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{what} should be a torch.Tensor of shape {_shape(expected)}, got {_a(type(got).__name__)}"
        if got.shape != expected.shape:
            formula = f" = {shape_formula}" if shape_formula else ""
            return f"{what} has shape {_shape(got)}; expected {_shape(expected)}{formula}"
        if expected.dtype == torch.bool:
            if got.dtype != torch.bool:
                return f"{what} should be a boolean mask (dtype torch.bool), got {got.dtype}"
            wrong = (got != expected).nonzero()
            if len(wrong):
                idx = tuple(wrong[0].tolist())
                row, col, meaning = mask_words
                where = f"({row} {idx[-2]}, {col} {idx[-1]})" if len(idx) >= 2 else str(idx)
                return (f"{what}: {len(wrong)} of {expected.numel()} entries are wrong; the first is {where}, where "
                        f"your mask says {bool(got[idx])} and the answer {bool(expected[idx])} ({meaning})")
            return None
        if got.dtype != expected.dtype:
            return f"{what} has dtype {got.dtype}; expected {expected.dtype}"
        g, e = got.detach().double(), expected.detach().double()
        bad = ~torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
        if bad.any():
            diff = (g - e).abs().nan_to_num(float("inf"))
            where = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
            return (f"{what}: {int(bad.sum())} of {e.numel()} values differ; the largest difference is "
                    f"{diff.max().item():.3g} at index {where} (got {g[where].item():.6g}, expected "
                    f"{e[where].item():.6g}; tolerance atol={atol:g}, rtol={rtol:g})")
        return None
    if isinstance(expected, bool) or isinstance(expected, int):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if type(got) is not type(expected):
            return f"{what} should be a Python {type(expected).__name__}, got {_a(type(got).__name__)}: {got!r}"
        return None if got == expected else f"{what} is {got!r}; expected {expected!r}"
    if isinstance(expected, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)):
            return f"{what} should be a number, got {type(got).__name__}"
        return None if abs(got - expected) <= atol + rtol * abs(expected) else \
            f"{what} is {got:.6g}; expected {expected:.6g} (tolerance atol={atol:g}, rtol={rtol:g})"
    return None if got == expected else f"{what} is {got!r}; expected {expected!r}"


def _in_place(err: Exception) -> bool:
    text = str(err)
    return "in-place" in text or "leaf Variable" in text or "modified by an inplace" in text


def _clone(args: tuple) -> tuple:
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


@dataclass
class Exercise:
    """A checked exercise. ``reference`` is the solution (its source is what ``solution()`` prints),
    ``cases`` the inputs it is checked on, ``hints`` shown one per ``hint()`` call, ``mistakes`` the
    known wrong answers with their messages. ``grad=True`` also compares the gradients with respect to
    the floating-point input tensors (for an answer that must be differentiable), or only those named in
    ``grad_args`` (e.g. not a teacher's logits, which need none). ``mask_words`` names a boolean mask's
    rows, columns and the meaning of True in feedback."""
    name: str
    reference: Callable
    cases: list[Case]
    hints: list[str]
    mistakes: list[Mistake] = field(default_factory=list)
    shape_formula: str = ""
    atol: float = 1e-5
    rtol: float = 1e-4
    grad: bool = False
    grad_args: tuple = ()
    mask_words: tuple = QUERY_KEY
    _hints_shown: int = 0

    # ---- what the learner calls -------------------------------------------------------------------
    def check(self, answer: Any) -> bool:
        """Run ``answer`` (a function with the reference's signature) on every case, or, for an exercise
        whose answer is a value (a reference without arguments), compare it; print the verdict."""
        try:
            problem = self._first_problem(answer)
        except Exception as err:  # a bug in a case builder must not look like the learner's fault
            print(f"{self.name}: the checker itself failed ({type(err).__name__}: {err}); please report it")
            return False
        if problem is None:
            print(f"{self.name}: correct" + ("" if self.takes_value else f" on all {len(self.cases)} cases")
                  + (" (values and gradients)" if self.grad else ""))
            return True
        print(f"{self.name}: {problem}")
        return False

    def hint(self) -> None:
        """Print the next hint (the last one again once all have been shown)."""
        if not self.hints:
            print(f"{self.name}: no hints for this one")
            return
        k = min(self._hints_shown, len(self.hints) - 1)
        self._hints_shown += 1
        print(f"{self.name}, hint {k + 1} of {len(self.hints)}: {self.hints[k]}")

    def solution(self) -> None:
        """Print the reference solution's source."""
        print(textwrap.dedent(inspect.getsource(self.reference)))

    # ---- how it is judged -------------------------------------------------------------------------
    @property
    def takes_value(self) -> bool:
        """True when the answer is a value, not a function (the reference takes no arguments)."""
        return not inspect.signature(self.reference).parameters

    def _first_problem(self, answer) -> str | None:
        if self.takes_value:
            if answer is None:
                return "not attempted yet (the answer is still None): put your value in, then check again"
            return self._value_problem(answer)
        if not callable(answer):
            return f"pass your function itself (check({self.name})), not {type(answer).__name__} {str(answer)[:60]}"
        for case in self.cases:
            expected = self.reference(*case.make())
            args = case.make()
            try:
                got = answer(*args)
            except NotImplementedError:
                return "not attempted yet (the stub still raises NotImplementedError): write the function, then check again"
            except Exception as err:
                if _in_place(err):
                    return (f"on the case {case.describe}, your function changes a tensor in place ({err}); use the "
                            "out-of-place form (e.g. masked_fill, not masked_fill_) on the inputs")
                return (f"on the case {case.describe}, your function raised {type(err).__name__}: {err}"
                        + self._mistake_note(err, case, expected))
            problem = compare(got, expected, atol=self.atol, rtol=self.rtol, shape_formula=self.shape_formula,
                              mask_words=self.mask_words)
            if problem is not None:
                return f"on the case {case.describe}, {problem}" + self._mistake_note(got, case, expected)
            if self.grad:                    # right values: a gradient problem has no known-mistake note
                problem = self._gradient_problem(answer, case)
                if problem is not None:
                    return f"on the case {case.describe}, the values are right but {problem}"
        return None

    def _value_problem(self, value) -> str | None:
        """A value answer: right or not, without giving the expected value away."""
        expected = self.reference()
        problem = compare(value, expected, atol=self.atol, rtol=self.rtol)
        if problem is None:
            return None
        if type(value) is not type(expected) and not isinstance(value, torch.Tensor):
            return problem                                   # a wrong type: saying so gives nothing away
        hint = ""
        if isinstance(value, (int, float)) and isinstance(expected, (int, float)):
            hint = " (too small)" if value < expected else " (too large)"
        return f"{value!r} is not right yet{hint}" + self._mistake_note(value, Case("the value", lambda: ()), expected)

    def _mistake_note(self, got, case: Case, expected) -> str:
        """The message of the known mistake that gives the same answer (or raises the same error). A
        mistake that equals the reference on this case cannot explain a difference, so it is skipped."""
        for mistake in self.mistakes:
            try:
                known = mistake.fn(*case.make())
            except Exception as err:
                if isinstance(got, Exception) and type(got) is type(err) and str(got) == str(err):
                    return f". This looks like a known mistake: {mistake.message}"
                continue
            if isinstance(got, Exception) or compare(known, expected, atol=self.atol, rtol=self.rtol) is None:
                continue
            if compare(got, known, atol=self.atol, rtol=self.rtol) is None:
                return f". This looks like a known mistake: {mistake.message}"
        return ""

    def _gradient_problem(self, answer, case: Case) -> str | None:
        names = list(inspect.signature(self.reference).parameters)
        wanted = set(self.grad_args) or set(names)

        def grads(fn):
            args = [a.clone().requires_grad_(True)
                    if isinstance(a, torch.Tensor) and a.is_floating_point() and names[i] in wanted else a
                    for i, a in enumerate(case.make())]
            out = fn(*args)
            outs = out if isinstance(out, tuple) else (out,)
            weight = torch.Generator().manual_seed(0)
            loss = sum((o * torch.randn(o.shape, generator=weight, dtype=o.dtype)).sum()
                       for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point())
            inputs = [(names[i], a) for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
            return [n for n, _ in inputs], torch.autograd.grad(loss, [a for _, a in inputs], allow_unused=True)
        try:
            got_names, got = grads(answer)
        except RuntimeError as err:
            if _in_place(err):
                return f"it changes an input in place ({err}); use the out-of-place form (e.g. masked_fill)"
            return (f"no gradient can flow through it ({err}): keep the computation in torch, without .detach(), "
                    "torch.no_grad() or a trip through numpy")
        expected_names, expected = grads(self.reference)
        for name, g, e in zip(expected_names, got, expected):
            if g is None and e is not None:
                return f"no gradient reaches `{name}` (is it detached, or not used?), and it should"
            if e is not None:
                problem = compare(g, e, atol=self.atol * 10, rtol=self.rtol * 10, what=f"the gradient for `{name}`")
                if problem:
                    return problem
        return None
