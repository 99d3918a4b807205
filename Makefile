# Two entry points (see README): `make demo` and `make test`.
# Both create .venv and install what they need; re-running is cheap.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lobseq demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf data/raw data/processed mlruns/mlflow.db mlruns/[0-9]* mlruns/models
