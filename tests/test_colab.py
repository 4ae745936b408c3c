"""The Colab path: the install changes none of Colab's packages, setup() keeps runs on Google Drive,
runs_root() is where every run goes, and `make colab` points every place at one repository."""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
import venv
from pathlib import Path

import jupytext
import pytest

import vitcourse
from vitcourse import workspace
from vitcourse.recipes import recipe, recipe_run_dir
from vitcourse.study import Study, run_dir

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
JUPYTER = Path(sys.executable).with_name("jupyter")

# Colab's GPU runtime of 2026-08 (googlecolab/backend-info, pip-freeze.gpu.txt): what must stay as it is.
COLAB = {"torch": "2.11.0+cu128", "torchvision": "0.26.0", "ipywidgets": "7.7.1", "numpy": "2.1.3",
         "matplotlib": "3.10.0", "tqdm": "4.67.3", "einops": "0.8.2"}


# ---- installing changes nothing Colab has ---------------------------------------------------------------
def _colab_like_venv(folder: Path) -> Path:
    """A venv where pip sees Colab's versions installed (their metadata; pip decides from it alone)."""
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for name, version in COLAB.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    return python


def test_installing_the_package_on_colab_changes_none_of_its_packages(tmp_path):
    source = tmp_path / "src"  # a copy: building writes build/ and egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "build", "notebooks",
                                                                  "*.egg-info", "__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, f"could not build the package's wheel offline:\n{built.stderr[-2000:]}"
    python = _colab_like_venv(tmp_path / "colab")
    report = tmp_path / "report.json"
    wheel = next((tmp_path / "wheel").glob("vitcourse-*.whl"))
    # --no-index: every requirement must already be met by what Colab has, or pip fails naming it.
    dry = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--no-index", "--report", str(report),
                          "-q", str(wheel)], capture_output=True, text=True)
    assert dry.returncode == 0, f"pip would need more than Colab has:\n{dry.stderr[-2000:]}"
    installs = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert set(installs) == {"vitcourse"}, f"installing would change Colab's packages: {installs}"


def test_requirements_are_lower_bounds_only():
    for req in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        assert re.fullmatch(r"[a-z_-]+>=[0-9.]+", req), f"{req}: Colab's packages need a plain lower bound"


# ---- setup() and runs_root() -----------------------------------------------------------------------------
@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    """A stand-in google.colab whose drive.mount creates MyDrive, as Colab's does after the learner allows it."""
    mount_point = tmp_path / "content" / "drive"
    mounts = []

    def mount(path):
        mounts.append(path)
        (Path(path) / "MyDrive").mkdir(parents=True, exist_ok=True)

    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    colab.__spec__ = types.SimpleNamespace(name="google.colab")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(workspace, "DRIVE_MOUNT", mount_point)
    monkeypatch.setattr(workspace, "_drive_folder", None)
    for var in ("VITCOURSE_RUNS", "VITCOURSE_DRIVE", "VITCOURSE_DATA"):
        monkeypatch.delenv(var, raising=False)
    return mount_point, mounts


def test_drive_is_mounted_at_colabs_place_by_default():
    assert workspace.DRIVE_MOUNT == Path("/content/drive")


def test_setup_on_colab_mounts_drive_once_and_keeps_every_run_there(fake_colab, capsys):
    mount_point, mounts = fake_colab
    assert vitcourse.on_colab()
    vitcourse.setup()
    vitcourse.setup()  # a second chapter's setup cell, or a re-run: Drive is already there
    assert mounts == [str(mount_point)]
    drive = mount_point / "MyDrive"
    out = capsys.readouterr().out
    assert str((drive / "vitcourse" / "runs").resolve()) in out and "torch" in out  # where, and the report
    places = {"runs_root": vitcourse.runs_root(), "run_dir": run_dir("x", {"a": 1}),
              "Study": Study("y").folder, "Study.checkpoint": Study("y").checkpoint({"a": 1}),
              "recipe_run_dir": recipe_run_dir(recipe("vit"), _Named("synthetic", 10), name="03_vit")}
    for what, path in places.items():
        assert path.is_relative_to(drive / "vitcourse" / "runs"), f"{what}: {path} is not on Drive"
    assert os.environ["VITCOURSE_DATA"] == str(drive / "vitcourse" / "data")  # CIFAR downloaded once, there


class _Named:
    def __init__(self, name, n):
        self.name, self.n = name, n

    def __len__(self):
        return self.n


def test_setup_on_colab_without_a_gpu_says_how_to_get_one(fake_colab, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("VITCOURSE_PROFILE", raising=False)  # a learner's runtime: the default profile
    vitcourse.setup()
    out = capsys.readouterr().out
    assert "Runtime > Change runtime type > T4 GPU" in out and "cpu profile" in out


def test_drive_opt_out_keeps_runs_on_the_vms_disk(fake_colab, monkeypatch, capsys):
    _, mounts = fake_colab
    monkeypatch.setenv("VITCOURSE_DRIVE", "0")
    vitcourse.setup()
    assert mounts == [] and vitcourse.runs_root() == Path("runs")
    assert "runtime reset deletes these runs" in capsys.readouterr().out


def test_setup_elsewhere_mounts_nothing(monkeypatch, capsys):
    monkeypatch.setattr(workspace, "on_colab", lambda: False)
    monkeypatch.setattr(workspace, "_drive_folder", None)
    monkeypatch.delenv("VITCOURSE_RUNS", raising=False)
    vitcourse.setup()
    assert vitcourse.runs_root() == Path("runs") and workspace.drive_folder() is None
    assert "runs " in capsys.readouterr().out


def test_vitcourse_runs_is_honoured_everywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_RUNS", str(tmp_path / "elsewhere"))
    root = tmp_path / "elsewhere"
    assert vitcourse.runs_root() == root
    assert run_dir("x", {"a": 1}).is_relative_to(root) and Study("s").folder.is_relative_to(root)
    assert recipe_run_dir(recipe("vit"), _Named("synthetic", 10), name="03_vit").is_relative_to(root)


def test_claims_are_saved_under_runs_root(tmp_path, monkeypatch):
    from vitcourse.claims import Claims
    monkeypatch.setenv("VITCOURSE_RUNS", str(tmp_path))
    monkeypatch.delenv("VITCOURSE_CLAIMS_DIR", raising=False)
    claims = Claims("99_test")
    claims.add("C", "a claim", "1 > 0", True)
    claims.show()
    assert (tmp_path / "claims" / "99_test.md").exists()


def test_a_notebook_run_writes_nowhere_but_runs_root(tmp_path):
    """Chapter 01 in the smoke profile, from a folder of its own: runs and claims go to $VITCOURSE_RUNS."""
    work, runs, out = tmp_path / "work", tmp_path / "runs", tmp_path / "out"
    work.mkdir()
    nb = shutil.copy(ROOT / "notebooks" / "01_seq2seq_attention.ipynb", work)
    env = {**os.environ, "VITCOURSE_PROFILE": "smoke", "VITCOURSE_RUNS": str(runs), "PYTHONPATH": str(ROOT)}
    env.pop("VITCOURSE_CLAIMS_DIR", None)
    result = subprocess.run([str(JUPYTER), "nbconvert", "--to", "notebook", "--execute", "--output-dir", str(out),
                             str(nb)], env=env, capture_output=True, text=True, timeout=600, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in work.iterdir()) == ["01_seq2seq_attention.ipynb"], "wrote beside the notebook"
    written = {p.relative_to(runs).parts[0] for p in runs.rglob("*") if p.is_file()}
    assert written == {"01_seq2seq", "claims"}, written
    assert list(runs.glob("01_seq2seq/smoke/*/checkpoint.pt")), "the chapter's training runs were not checkpointed"


# ---- one address, every place ----------------------------------------------------------------------------
def _setup_cell(notebook: Path) -> str:
    cells = [c for c in json.loads(notebook.read_text())["cells"]
             if c["cell_type"] == "code" and "".join(c["source"]).startswith("# Setup")]
    assert len(cells) == 1, f"{notebook.name}: {len(cells)} setup cells"
    return "".join(cells[0]["source"])


def test_every_notebook_has_the_same_setup_cell_from_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    url, branch = meta["project"]["urls"]["Repository"], meta["tool"]["vitcourse"]["colab-branch"]
    cells = {nb.name: _setup_cell(nb) for nb in NOTEBOOKS}
    assert len(set(cells.values())) == 1, "the setup cells differ between notebooks"
    cell = next(iter(cells.values()))
    assert f'COURSE_REPO, COURSE_BRANCH = "{url}", "{branch}"' in cell
    assert cell.rstrip().endswith("vitcourse.setup()") and "git+{COURSE_REPO}@{COURSE_BRANCH}" in cell


def test_every_place_is_made_from_the_current_address():
    check = subprocess.run([sys.executable, str(ROOT / "bin" / "colab"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def _cells(path: Path) -> list[tuple[str, str]]:
    """A notebook's cells as jupytext reads them from either half of the pair (what its --diff compares)."""
    return [(c.cell_type, c.source) for c in jupytext.read(path).cells]


def _copy_of_the_course(tmp_path) -> Path:
    copy = tmp_path / "course"
    for part in ("bin", "notebooks"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("runs", "build", ".ipynb_checkpoints"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, copy / part)
    return copy


def test_make_colab_points_every_place_at_a_fork(tmp_path):
    copy = _copy_of_the_course(tmp_path)
    old = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    done = subprocess.run([sys.executable, str(copy / "bin" / "colab"), "--repo", "my-school/vit-fork",
                           "--branch", "spring-2027"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    meta = tomllib.loads((copy / "pyproject.toml").read_text())
    assert meta["project"]["urls"]["Repository"] == "https://github.com/my-school/vit-fork"
    assert meta["tool"]["vitcourse"]["colab-branch"] == "spring-2027"
    readme = (copy / "README.md").read_text()
    for path in [copy / "README.md", *sorted((copy / "notebooks").glob("[0-9][0-9]_*.*"))]:
        text = path.read_text()
        assert old not in text, f"{path.name} still names {old}"
    for nb in sorted((copy / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        link = f"colab.research.google.com/github/my-school/vit-fork/blob/spring-2027/notebooks/{nb.name}"
        assert link in nb.read_text() and link in nb.with_suffix(".py").read_text() and link in readme
        assert '"https://github.com/my-school/vit-fork", "spring-2027"' in _setup_cell(nb)
        assert _cells(nb) == _cells(nb.with_suffix(".py")), f"{nb.name} and its source are out of sync"
    assert len({_setup_cell(nb) for nb in (copy / "notebooks").glob("*.ipynb")}) == 1
    again = subprocess.run([sys.executable, str(copy / "bin" / "colab"), "--check"], capture_output=True, text=True)
    assert again.returncode == 0, again.stdout


def test_make_colab_refuses_a_malformed_repository(tmp_path):
    copy = _copy_of_the_course(tmp_path)
    before = (copy / "pyproject.toml").read_text()
    bad = subprocess.run([sys.executable, str(copy / "bin" / "colab"), "--repo", "https://github.com/a/b"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "is not owner/name" in bad.stderr
    assert (copy / "pyproject.toml").read_text() == before
