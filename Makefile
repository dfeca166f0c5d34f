# Two entry points (see README): `make book` builds the whole book in the default (cpu)
# profile, `make test` runs the test suite. Both create or refresh .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test]"
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (alignbook)" >/dev/null
	@touch $(STAMP)

# Two chapters at a time on two cores (the chapters that time themselves run alone).
book: $(STAMP)
	$(BIN)/alignbook build --profile cpu --jobs 2

# Tests marked `ci` (chapters re-run with other parameters, the gpu profile's paths on fake
# data, killed and concurrent builds, Dask clusters, small books rendered by Jupyter Book,
# the shapes of sweep and benchmark tables, ConvNet cases of checks whose MLP case runs
# here, the authors' 200-epoch Add-task run) run in .ci/run after this.
# The tests compile at LLVM optimisation level 1 (tests/conftest.py), the book at XLA's default.
# The 20 slowest tests are listed at the end, so that a test that grew slow is seen.
test: $(STAMP)
	$(BIN)/python -m pytest -m "not ci" --durations=20

clean:
	rm -rf _build results
