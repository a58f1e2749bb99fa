PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint bench clean

# Re-install whenever the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,bench]"
	touch $(STAMP)

run: $(STAMP)
	mkdir -p drop
	cp -n sample_data/* drop/ 2>/dev/null || true
	$(BIN)/ingest run --config config.toml

lint: $(STAMP)
	$(BIN)/ruff check ingest tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,bench,spark]"
	$(BIN)/pytest -m slow -q

bench: $(STAMP)
	$(BIN)/python -m bench.run --shapes small,large,tiny --repeat 3

clean:
	rm -rf $(VENV) drop output archive quarantine
