# make lab | make test | make course PROFILE=smoke|cpu|gpu | make bench | make bench-accuracy
# make colab REPO=owner/name BRANCH=main
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= smoke
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup lab test course clean colab

# The virtual environment, with the package installed editable with its dev extras.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

# JupyterLab on notebooks/ (bin/lab adds --allow-root when the user is root, as in Docker or Colab).
lab: $(STAMP)
	VENV=$(VENV) bin/lab

# Unit tests, the notebook pairing check (tests/test_notebooks.py) and nbval over every notebook.
test: $(STAMP)
	VITCOURSE_PROFILE=smoke $(PY) -m pytest tests $(NOTEBOOKS) --nbval-lax --nbval-current-env

# Every notebook in order, headless: executed copies and HTML in build/, claims in build/claims.md.
course: $(STAMP)
	rm -rf build/claims && mkdir -p build/claims
	set -e; for nb in $(NOTEBOOKS); do \
	  echo "== $$nb ($(PROFILE))"; \
	  VITCOURSE_PROFILE=$(PROFILE) VITCOURSE_CLAIMS_DIR=$(CURDIR)/build/claims \
	    $(VENV)/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
	    --output-dir build $$nb; \
	  $(VENV)/bin/jupyter nbconvert --to html --output-dir build build/$$(basename $$nb); \
	done
	$(PY) -m vitcourse.claims build/claims build/claims.md

# Point the course at a GitHub repository and branch: pyproject's address, every notebook's setup cell
# and Colab badge (both halves of each pair) and the README's Colab table (bin/colab).
REPO ?=
BRANCH ?=
colab: $(STAMP)
	$(PY) bin/colab $(if $(REPO),--repo $(REPO)) $(if $(BRANCH),--branch $(BRANCH))

clean:
	rm -rf build notebooks/runs runs

# Benchmarks (benchmarks/RESULTS.md): items 1-3 and 5 (~3 min on 2 cores), then item 4 (~30 min).
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--threads 1" (python -m benchmarks -h).
BENCH_ARGS ?=
.PHONY: bench bench-accuracy
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-accuracy: $(STAMP)
	$(PY) -m benchmarks accuracy $(BENCH_ARGS)
