# `make run`: venv + install + start the gateway with the shipped default config
#   (make run PORT=4001 HOST=0.0.0.0 CONFIG=my.yaml).
# `make test`: venv + dev install + the whole suite.
# `make fuzz`: the fuzz suite (tests/test_fuzz_*.py, and the property tests that read FUZZ_EXAMPLES) long:
#   FUZZ_EXAMPLES examples per target, random seed.
# `make check`: venv + dev install + ruff lint, ruff format check and mypy (settings in pyproject.toml).
# `make chaos`: venv + dev install + the long fault-injection run (tests/test_chaos.py, several minutes;
#   the default suite runs its short version).
# `make bench`: the benchmark suite (bench/README.md); `make bench-compare`: the same, plus LiteLLM;
#   `make bench-scale`: two instances behind nginx sharing Postgres and Redis (bench/scaleout.py).
#   Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--workers 2 --duration 10".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test chaos fuzz check install bench bench-compare bench-scale clean system-deps

# the compiled parts (setup.py) are rebuilt when their sources change
NATIVE_SOURCES := setup.py src/parley/filters/_spans.c src/parley/filters/metrics/_lean.c

$(STAMP): pyproject.toml $(NATIVE_SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,presidio]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

PORT ?= 4000
HOST ?= 127.0.0.1
CONFIG ?= config/default.yaml

run: $(STAMP)
	$(BIN)/parley serve --config $(CONFIG) --host $(HOST) --port $(PORT)

# Debian packages the tests drive (nginx-light, chromium): deploy/install-system-deps.sh.
system-deps:
	@bash deploy/install-system-deps.sh

# Two pytest workers (pytest-xdist): the suite mostly waits on processes, sleeps and timeouts, so
# on 2 cores it takes 9-10 min instead of 17 (measured on a fresh clone). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

chaos: $(STAMP)
	PARLEY_CHAOS=long $(BIN)/python -m pytest -q -s -m chaos

FUZZ_EXAMPLES ?= 500

# and the translators' property tests (tests/fuzz_support.py `examples`: short in `make test`)
FUZZ_TESTS := tests/test_fuzz_*.py tests/test_translate_stream.py tests/test_translate_request.py \
	tests/test_translate_gemini.py tests/test_translate_bedrock.py

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q $(FUZZ_TESTS)

check: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
LITELLM_VENV := bench/.litellm-venv

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	rm -f $(VENV)/.bench-* && touch $(BENCH_STAMP)

$(LITELLM_VENV)/.installed: bench/install_litellm.py
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/python bench/install_litellm.py
	touch $@

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-compare: $(BENCH_STAMP) $(LITELLM_VENV)/.installed
	$(BIN)/python bench/run.py --compare $(BENCH_ARGS)

bench-scale: $(BENCH_STAMP)
	$(BIN)/python bench/scaleout.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
