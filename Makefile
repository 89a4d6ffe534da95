# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/horizon up --config config.yaml --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check horizon supervisor web tests bench

bench: $(STAMP)
	$(BIN)/python bench/core.py
	$(BIN)/python bench/lua.py
	$(BIN)/python -m bench.peers.run
	$(BIN)/python bench/retention.py

clean:
	rm -rf $(VENV) var .pytest_cache
