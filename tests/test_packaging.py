"""The set-up files agree with each other: pyproject, environment.yml, the notebooks' install URL."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements_in_environment_yml() -> set[str]:
    import yaml  # installed with jupytext
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {item for item in pip if not item.startswith("-e")}


def test_environment_yml_matches_pyproject():
    project = PYPROJECT["project"]
    expected = set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])
    assert _requirements_in_environment_yml() == expected
    assert "- -e .[dev]" in (ROOT / "environment.yml").read_text()


def test_torch_is_bounded_below_only():
    for req in PYPROJECT["project"]["dependencies"]:
        if req.startswith(("torch", "torchvision")):
            assert ">=" in req and "<" not in req and "==" not in req, req


def test_every_notebook_installs_from_the_one_course_url():
    url = PYPROJECT["project"]["urls"]["Repository"]
    branch = PYPROJECT["tool"]["vitcourse"]["colab-branch"]
    sources = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert sources, "no notebooks found"
    for src in sources:
        found = re.findall(r'^COURSE_REPO, COURSE_BRANCH = "([^"]+)", "([^"]+)"', src.read_text(), flags=re.M)
        assert found == [(url, branch)], f"{src.name}: {found} differs from pyproject's {url} at {branch}"
        assert re.search(r"^vitcourse\.setup\(\)$", src.read_text(), flags=re.M), f"{src.name} never calls setup()"


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make test" in (ROOT / ".ci" / "run").read_text()
