PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: compile run test test-slow lint bench clean

INSTALL_LOG := $(VENV)/install.log

# Re-install whenever the project's metadata changes. Quietly: pip and setuptools'
# warnings go to $(INSTALL_LOG), shown only if the install fails, so that the first
# lines of `make run` are the service's own.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (a minute or two the first time; log: $(INSTALL_LOG))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q -q --upgrade pip > $(INSTALL_LOG) 2>&1 \
		&& $(BIN)/python -m pip install -q -q -e ".[dev,dask,bench,delta]" >> $(INSTALL_LOG) 2>&1 \
		|| { cat $(INSTALL_LOG); echo "make: installing into $(VENV) failed"; exit 1; }
	@touch $(STAMP)

# An editable install leaves the package as sources. Where Python may not write its
# bytecode cache (PYTHONDONTWRITEBYTECODE, as in many containers), every process the
# service or the tests start would compile each module again: compiled here, as pip
# does when it installs a wheel. Only what changed since is compiled again.
compile: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 ingest tests bench/*.py bench/peers > /dev/null

run: compile
	@mkdir -p drop
	@cp -n sample_data/* drop/ 2>/dev/null || true
	@$(BIN)/ingest run --config config.toml

lint: $(STAMP)
	$(BIN)/ruff check ingest tests bench
	$(BIN)/mypy

# Most tests wait on real processes (services, pools, kill -9 and restarts) more than they
# compute, so they run in XDIST workers side by side: on two cores, 6 kept both busy and
# took 437 s where 4 took 515 and 8 took 530. No test bounds how long something takes; those
# that read what the machine's pace sets (the event loop's lag; marked serial) run alone
# afterwards, where other tests' processes cannot stretch it.
XDIST ?= 6

# pytest rewrites each test module's asserts as it imports it, and caches what it wrote
# only where Python may write bytecode: cached here once (1.5 s of each collection's 3.2),
# not rewritten by every XDIST worker and again by the serial phase. Errors show below.
test: lint compile
	@env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q > /dev/null 2>&1 || true
	$(BIN)/pytest -m "not slow and not serial" -q -n $(XDIST) --dist worksteal
	$(BIN)/pytest -m "serial and not slow" -q

test-slow: compile
	$(BIN)/python -m pip install --quiet -e ".[dev,dask,bench,delta,spark]"
	$(BIN)/pytest -m slow -q

bench: $(STAMP)
	$(BIN)/python -m bench.run --shapes small,large,tiny,jsonl,big --repeat 3

clean:
	rm -rf $(VENV) drop output archive quarantine
