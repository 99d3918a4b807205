# Two entry points (see README): `make demo` and `make test`.
# Both create .venv and install what they need; re-running is cheap.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean postgres

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,ray,team]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lobseq demo

test: $(STAMP) postgres
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup  # 2 workers: CI has 2 cores; see tests/conftest.py

# The team-mode tests start a real PostgreSQL (tests/conftest.py): install its binaries if missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "PostgreSQL binaries missing: installing them (apt-get install -y postgresql) for the team-mode tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
	  || echo "could not install PostgreSQL: the team-mode tests will skip"; }

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf data/raw data/processed mlruns/mlflow.db mlruns/[0-9]* mlruns/models
