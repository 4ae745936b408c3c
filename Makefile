# make lab | make test | make course PROFILE=smoke|cpu|gpu | make bench | make bench-accuracy
# make colab REPO=owner/name BRANCH=main | make rehearsal | make gpu-check
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

# The gpu profile's rehearsal (which writes the plan a test compares with the shipped one), then the
# unit tests, the notebook pairing check (tests/test_notebooks.py) and nbval over every notebook.
test: $(STAMP)
	$(MAKE) --no-print-directory rehearsal
	VITCOURSE_PROFILE=smoke $(PY) -m pytest tests --ignore=tests/gpu $(NOTEBOOKS) --nbval-lax --nbval-current-env

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

# The gpu profile rehearsed on this CPU (vitcourse/rehearsal.py): every notebook headless with the gpu
# profile's models, batches and augmentations on CIFAR-shaped stand-in data, every training run cut to
# a few steps and measured; writes the plan, build/gpu-plan.json and build/gpu-plan.md (vitcourse/plan.py).
REHEARSAL_NOTEBOOKS ?= $(NOTEBOOKS)
REHEARSAL := $(CURDIR)/build/rehearsal
.PHONY: rehearsal
rehearsal: $(STAMP)
	rm -rf $(REHEARSAL) && mkdir -p $(REHEARSAL)/plan $(REHEARSAL)/out
	set -e; for nb in $(REHEARSAL_NOTEBOOKS); do \
	  echo "== $$nb (gpu profile, rehearsed)"; \
	  VITCOURSE_PROFILE=gpu VITCOURSE_REHEARSAL=1 VITCOURSE_RUNS=$(REHEARSAL)/runs \
	    VITCOURSE_PLAN=$(REHEARSAL)/plan/$$(basename $$nb .ipynb).jsonl \
	    $(VENV)/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=-1 \
	    --output-dir $(REHEARSAL)/out $$nb; \
	done
	$(PY) -m vitcourse.plan $(REHEARSAL)/plan build/gpu-plan.json build/gpu-plan.md benchmarks/gpu-throughput.json

# On a machine with a CUDA GPU (no network): the CUDA tests (tests/gpu), images/s of the gpu-profile
# models, the MFU row and the rehearsal on CUDA, appended to benchmarks/RESULTS.md with the GPU's name
# (benchmarks/gpu_check.py). On a CPU it runs its CPU parts and says which it skipped and why.
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

# Point the course at a GitHub repository and branch: pyproject's address, every notebook's setup cell
# and Colab badge (both halves of each pair) and the README's Colab table (bin/colab).
REPO ?=
BRANCH ?=
colab: $(STAMP)
	$(PY) bin/colab $(if $(REPO),--repo $(REPO)) $(if $(BRANCH),--branch $(BRANCH))

clean:
	rm -rf build notebooks/runs runs

# Benchmarks (benchmarks/RESULTS.md): items 1-3, 5 and 6 (~8 min on 2 cores), then item 4 (~30 min).
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--threads 1" (python -m benchmarks -h).
BENCH_ARGS ?=
.PHONY: bench bench-accuracy
bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

bench-accuracy: $(STAMP)
	$(PY) -m benchmarks accuracy $(BENCH_ARGS)
