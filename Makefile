# reasonrl — every target sets up the virtual environment first when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RECIPE ?= recipes/gsm8k/grpo-smollm2.yaml
GSM8K  ?= ../shared/data/gsm8k
# the real GSM8K beside the project when present, else the recipe's own source (hub id)
RUN_ARGS ?= $(if $(wildcard $(GSM8K)/train.jsonl),--data.source $(GSM8K),)
PYTEST := $(PY) -m pytest
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup system-deps run test test-fast test-slow test-long lint format bench eval clean data

$(STAMP): pyproject.toml requirements/constraints.txt scripts/setup.sh
	./scripts/setup.sh

setup: $(STAMP)

system-deps:  ## optional system libraries (tcmalloc), as root on Debian/Ubuntu
	./scripts/system-deps.sh

run: $(STAMP)  ## train the default recipe on the embedded model (a few CPU minutes)
	$(PY) -m reasonrl train $(RECIPE) $(RUN_ARGS)

test: $(STAMP)  ## everything CI runs: unit, integration, learning (slow ones included)
	$(PYTEST) tests --ignore=tests/benchmarks -m "not long" --durations=15

test-fast: $(STAMP)  ## the quick tier only (no tests marked slow)
	$(PYTEST) tests --ignore=tests/benchmarks -m "not slow and not long"

test-slow: $(STAMP)  ## the slow tier only: learning, 2-process and long integration tests
	$(PYTEST) tests --ignore=tests/benchmarks -m "slow and not long" --durations=15

test-long: $(STAMP)  ## the long tier CI leaves out: SmolLM2 recipes end to end, extra seeds, STORM solves and MinAtar
	$(PYTEST) tests --ignore=tests/benchmarks -m long --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)  ## side-by-side benchmarks against TRL, lm-eval-harness, CleanRL (ratios)
	$(PY) -m tests.benchmarks

eval: $(STAMP)  ## GSM8K evaluation of MODEL (default: embedded SmolLM2) on the real test set
	$(PY) -m reasonrl eval --model $(or $(MODEL),smollm2-135m-instruct) --task gsm8k \
		--data $(or $(DATA),../shared/data/gsm8k/test.jsonl) $(EVAL_ARGS)

data: $(STAMP)  ## regenerate the committed synthetic sample in data/
	$(PY) -m reasonrl data synthetic --n 200 --difficulty 1 4 --seed 0 --out data/synthetic_gsm8k.jsonl
	$(PY) -m reasonrl data pairs --n 200 --difficulty 1 4 --seed 0 --out data/preference_pairs.jsonl

clean:
	rm -rf outputs runs .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
