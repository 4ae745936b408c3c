"""The checked exercises: references pass, known mistakes fail with their own message, stubs are
"not attempted", and the feedback names what differs."""
import ast
import importlib
import inspect
import json
import re
import textwrap
from pathlib import Path

import pytest
import torch

from vitcourse.exercises import Case, Exercise, compare

MODULES = [f"ch0{k}" for k in range(8)]
ALL = [(m, ex) for m in MODULES for ex in importlib.import_module(f"vitcourse.exercises.{m}").EXERCISES]
IDS = [f"{m}.{ex.name}" for m, ex in ALL]


def _answer(ex, fn):
    """What a learner passes: the function, or its value for an exercise whose answer is a value."""
    return fn() if ex.takes_value else fn


@pytest.mark.parametrize("module,ex", ALL, ids=IDS)
def test_reference_passes(module, ex, capsys):
    assert ex.check(_answer(ex, ex.reference)) is True
    assert ": correct" in capsys.readouterr().out


@pytest.mark.parametrize("module,ex", ALL, ids=IDS)
def test_every_known_mistake_fails_with_its_message(module, ex, capsys):
    assert ex.mistakes, f"{ex.name} needs at least one known wrong variant"
    for mistake in ex.mistakes:
        assert ex.check(_answer(ex, mistake.fn)) is False
        out = capsys.readouterr().out
        assert "known mistake" in out and mistake.message in out
        assert "on the case" in out or ex.takes_value   # the failing case is named


@pytest.mark.parametrize("module,ex", ALL, ids=IDS)
def test_stub_is_not_attempted_and_hints_and_solution_exist(module, ex, capsys):
    def stub(*args):
        raise NotImplementedError

    assert ex.check(None if ex.takes_value else stub) is False
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
    assert "(query 0, key 1), where your mask says True and the answer False" in msg
    assert "True means the query may attend" in msg
    rows = compare(wrong, causal, mask_words=("sequence", "position", "True marks a real token"))
    assert "(sequence 0, position 1)" in rows and "real token" in rows
    assert "boolean mask" in compare(causal.float(), causal)


def test_tuples_integers_and_floats():
    assert "tuple of 2" in compare(torch.zeros(1), (torch.zeros(1), torch.zeros(1)))
    assert "output 1" in compare((torch.zeros(1), torch.ones(1)), (torch.zeros(1), torch.zeros(1)))
    assert compare(196, 196) is None and "expected 196" in compare(14, 196)
    assert "Python int" in compare(196.0, 196)
    assert compare(0.30000001, 0.3) is None and "expected 0.3" in compare(0.4, 0.3)


def test_a_value_exercise_takes_the_value_and_keeps_the_answer(capsys):
    from vitcourse.exercises import ch03
    assert ch03.tokens_at_384.check(577) is True
    assert ch03.tokens_at_384.check(576) is False
    out = capsys.readouterr().out
    assert "class token" in out and "too small" in out and "577" not in out.split("correct")[-1]
    assert ch03.tokens_at_384.check(600) is False
    assert "too large" in capsys.readouterr().out
    assert ch03.tokens_at_384.check(576.0) is False
    assert "should be a Python int" in capsys.readouterr().out


def test_a_non_differentiable_answer_fails_the_gradient_check(capsys):
    from vitcourse.exercises import ch03

    def detached(tokens, cls_token):
        return ch03.prepend_class_token_solution(tokens.detach(), cls_token)

    assert ch03.prepend_class_token.check(detached) is False
    out = capsys.readouterr().out
    assert "the values are right but no gradient reaches `tokens`" in out and "known mistake" not in out


def test_cases_are_rebuilt_so_an_in_place_answer_cannot_spoil_the_next():
    seen = []
    ex = Exercise("double", lambda x: 2 * x, [Case("x", lambda: (torch.ones(2),))] * 2, hints=["2x"])

    def in_place(x):
        seen.append(x.clone())
        return x.mul_(2)

    assert ex.check(in_place) is True
    assert all(torch.equal(s, torch.ones(2)) for s in seen)


def test_self_contained_references_agree_with_the_package():
    # The references are written out so that a learner can paste them; the package is the authority.
    from vitcourse.distill import _soft_kl
    from vitcourse.exercises import ch02, ch04, ch05, ch06, ch07
    from vitcourse.claims import paired
    from vitcourse.models.swin import window_partition, window_reverse
    from vitcourse.nn.attention import causal_mask, dot_product_attention
    from vitcourse.nn.positional import sinusoidal_table
    from vitcourse.nn.slvit import DIAGONALS, shift_image, token_receptive_field

    for case in ch02.scaled_dot_product.cases:
        out, weights = ch02.scaled_dot_product_solution(*case.make())
        ref_out, ref_weights = dot_product_attention(*case.make())
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(weights, ref_weights)
    assert torch.equal(ch02.causal_mask_solution(5), causal_mask(5))
    torch.testing.assert_close(ch02.sinusoidal_encoding_solution(20, 12), sinusoidal_table(20, 12))
    a, b = [0.81, 0.84, 0.80], [0.80, 0.80, 0.79]
    p = paired(a, b)
    assert ch04.paired_difference_solution(a, b) == pytest.approx((p.mean, p.half_width))
    s, t = torch.randn(4, 10), torch.randn(4, 10)
    torch.testing.assert_close(ch05.soft_distillation_solution(s, t, 3.0), 9.0 * _soft_kl(s, t, 3.0))
    x = torch.randn(2, 3, 8, 8)
    package = torch.cat([x] + [shift_image(x, dx * 2, dy * 2) for dx, dy in DIAGONALS], dim=1)
    assert torch.equal(ch06.spt_shifts_solution(x, 2), package)
    assert ch06.token_receptive_field_solution(1, 4, 8) == token_receptive_field(1, kernel=8, stride=4)
    y = torch.randn(2, 8, 12, 3)
    assert torch.equal(ch07.window_partition_solution(y, 4), window_partition(y, 4))
    assert torch.equal(ch07.window_reverse_solution(window_partition(y, 4), 4, 8, 12), window_reverse(window_partition(y, 4), 4, 8, 12))


NOTEBOOKS = sorted(Path(__file__).resolve().parents[1].glob("notebooks/0*.ipynb"))


def _source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _notebook_namespace(cells) -> dict:
    """The names a learner's notebook has when its exercise cells run: its own top-level imports of
    torch, math and einops (what a pasted solution may use), then its `import ... as ex` cell."""
    ns: dict = {}
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse(_source(cell)).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if all(n.split(".")[0] in {"torch", "math", "einops", "vitcourse"} for n in names) and \
                        (not isinstance(node, ast.ImportFrom) or node.module != "vitcourse.plan"):
                    exec(compile(ast.Module([node], []), "<notebook imports>", "exec"), ns)
    return ns


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_exercise_cells_stub_then_pasted_solution(path, capsys):
    cells = json.loads(path.read_text())["cells"]
    tagged = [c for c in cells if "exercise" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) >= 3, f"{path.name}: at least three checked exercises"
    ns = _notebook_namespace(cells)
    module = ns["ex"]
    assert module.__name__ == f"vitcourse.exercises.ch{path.name[:2]}"
    for cell in tagged:
        source = _source(cell)
        stub = next(n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.Assign)))
        name = stub.name if isinstance(stub, ast.FunctionDef) else stub.targets[0].id
        checked = re.findall(r"ex\.(\w+)\.check\((\w+)\)", source)
        assert checked == [(name, name)], f"{path.name}: the cell checks the function or value it defines"
        exercise = getattr(module, name)
        assert exercise.hints and exercise.reference
        exec(source, ns)
        assert "not attempted yet" in capsys.readouterr().out
        if exercise.takes_value:                        # the learner's value: the reference's, pasted in
            solution = f"{name} = {exercise.reference()!r}"
        else:
            solution = textwrap.dedent(inspect.getsource(exercise.reference)).replace(
                f"def {exercise.reference.__name__}(", f"def {name}(", 1)
        lines = source.splitlines()
        pasted = "\n".join(lines[:stub.lineno - 1] + [solution] + lines[stub.end_lineno:])
        exec(pasted, ns)
        out = capsys.readouterr().out
        assert ": correct" in out, f"{path.name}, {name}: {out}"


def test_a_mistake_equal_to_the_reference_on_a_case_is_not_blamed(capsys):
    # With no mask, the "inverted mask" mistake computes the right answer: a detached answer that fails
    # only the gradient check must not be told its mask is inverted.
    from vitcourse.exercises import ch02

    def detached_weights(q, k, v, mask=None):
        out, weights = ch02.scaled_dot_product_solution(q, k, v, mask)
        return weights.detach() @ v, weights.detach()

    assert ch02.scaled_dot_product.check(detached_weights) is False
    out = capsys.readouterr().out
    assert "values are right but" in out and "mask is inverted" not in out


def test_in_place_edits_are_named(capsys):
    from vitcourse.exercises import ch01

    def in_place(scores, mask):
        return torch.softmax(scores.masked_fill_(~mask, float("-inf")), dim=-1)

    assert ch01.masked_softmax.check(in_place) is False
    assert "in place" in capsys.readouterr().out
