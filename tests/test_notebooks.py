"""Every notebook source (.py, jupytext percent) has its .ipynb pair, in sync and without outputs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
JUPYTEXT = Path(sys.executable).with_name("jupytext")


def test_every_source_has_a_pair_and_back():
    assert SOURCES
    assert {p.stem for p in SOURCES} == {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync(src):
    """jupytext compares the pair and succeeds (a crash prints no diff either), and the diff is empty."""
    nb = src.with_suffix(".ipynb")
    result = subprocess.run([str(JUPYTEXT), "--diff", "--diff-format", "py:percent", str(nb), str(src)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (f"`jupytext --diff` failed on {nb.name} (exit {result.returncode}), so the "
                                    f"pair was not compared:\n{result.stderr[-2000:]}")
    assert result.stdout.strip() == "", (f"{nb.name} and {src.name} differ; run "
                                         f"`jupytext --to ipynb {src}`:\n{result.stdout[:2000]}")


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_committed_without_outputs(src):
    cells = json.loads(src.with_suffix(".ipynb").read_text())["cells"]
    assert not [c for c in cells if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
