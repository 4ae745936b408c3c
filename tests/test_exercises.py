"""The checked exercises: references pass, known mistakes fail with their own message, stubs are
"not attempted", and the feedback names what differs."""
import importlib

import pytest
import torch

from vitcourse.exercises import Case, Exercise, compare

MODULES = [f"ch0{k}" for k in range(8)]
ALL = [(m, ex) for m in MODULES for ex in importlib.import_module(f"vitcourse.exercises.{m}").EXERCISES]
IDS = [f"{m}.{ex.name}" for m, ex in ALL]


@pytest.mark.parametrize("module,ex", ALL, ids=IDS)
def test_reference_passes(module, ex, capsys):
    assert ex.check(ex.reference) is True
    assert "correct on all" in capsys.readouterr().out


@pytest.mark.parametrize("module,ex", ALL, ids=IDS)
def test_every_known_mistake_fails_with_its_message(module, ex, capsys):
    assert ex.mistakes, f"{ex.name} needs at least one known wrong variant"
    for mistake in ex.mistakes:
        assert ex.check(mistake.fn) is False
        out = capsys.readouterr().out
        assert "known mistake" in out and mistake.message in out
        assert "on the case" in out                     # the failing case is named


@pytest.mark.parametrize("module,ex", ALL, ids=IDS)
def test_stub_is_not_attempted_and_hints_and_solution_exist(module, ex, capsys):
    def stub(*args):
        raise NotImplementedError

    assert ex.check(stub) is False
    assert "not attempted yet" in capsys.readouterr().out
    assert ex.hints
    for k in range(len(ex.hints) + 1):                  # one more call than there are hints: the last again
        ex.hint()
    out = capsys.readouterr().out
    assert f"hint 1 of {len(ex.hints)}" in out and out.count(f"hint {len(ex.hints)} of") == 2
    ex._hints_shown = 0
    ex.solution()
    assert f"def {ex.reference.__name__}(" in capsys.readouterr().out


def test_check_never_raises_and_names_the_error(capsys):
    from vitcourse.exercises import ch03

    def broken(images, patch_size):
        return images.reshape(-1, 7, 7)               # raises for most shapes

    assert ch03.patchify.check(broken) is False
    out = capsys.readouterr().out
    assert "raised RuntimeError" in out and "on the case 2 image(s) of 3x8x8, patch_size=4" in out
    assert ch03.patchify.check(42) is False
    assert "pass your function itself" in capsys.readouterr().out


def test_shape_is_reported_with_its_formula(capsys):
    from vitcourse.exercises import ch03
    assert ch03.patchify.check(lambda images, p: images.flatten(2)) is False
    out = capsys.readouterr().out
    assert "has shape (2, 3, 64); expected (2, 4, 48) = (B, (H/P) * (W/P), P * P * C)" in out


def test_values_report_count_largest_difference_and_where():
    expected = torch.zeros(2, 3)
    got = expected.clone()
    got[1, 2] = 0.5
    got[0, 0] = 1e-7                                    # within tolerance
    msg = compare(got, expected)
    assert "1 of 6 values differ" in msg and "0.5 at index (1, 2)" in msg and "atol=1e-05" in msg
    assert "dtype" in compare(expected.double(), expected)
    assert "should be a torch.Tensor" in compare([0.0], expected)
    assert compare(expected, expected) is None


def test_masks_report_the_first_wrong_query_key_pair():
    causal = torch.ones(4, 4).tril().bool()
    wrong = causal.T                                     # the transpose: every query sees the future
    msg = compare(wrong, causal)
    assert "(query 0, key 1)" in msg and "your mask allows and the answer blocks" in msg
    assert "boolean mask" in compare(causal.float(), causal)


def test_tuples_integers_and_floats():
    assert "tuple of 2" in compare(torch.zeros(1), (torch.zeros(1), torch.zeros(1)))
    assert "output 1" in compare((torch.zeros(1), torch.ones(1)), (torch.zeros(1), torch.zeros(1)))
    assert compare(196, 196) is None and "expected 196" in compare(14, 196)
    assert "Python int" in compare(196.0, 196)
    assert compare(0.30000001, 0.3) is None and "expected 0.3" in compare(0.4, 0.3)


def test_a_non_differentiable_answer_fails_the_gradient_check(capsys):
    from vitcourse.exercises import ch03

    def detached(tokens, cls_token):
        return ch03.prepend_class_token_solution(tokens.detach(), cls_token)

    assert ch03.prepend_class_token.check(detached) is False
    assert "does not depend on input 0" in capsys.readouterr().out


def test_cases_are_rebuilt_so_an_in_place_answer_cannot_spoil_the_next():
    seen = []
    ex = Exercise("double", lambda x: 2 * x, [Case("x", lambda: (torch.ones(2),))] * 2, hints=["2x"])

    def in_place(x):
        seen.append(x.clone())
        return x.mul_(2)

    assert ex.check(in_place) is True
    assert all(torch.equal(s, torch.ones(2)) for s in seen)
