# Two commands for a fresh machine: `make demo` (index the sample corpus, run queries) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
COL := .hsearch-demo

.PHONY: demo test setup setup-test clean

$(BIN)/hsearch: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

setup: $(BIN)/hsearch

$(VENV)/.test-deps: $(BIN)/hsearch
	$(PIP) -e ".[test]"
	touch $@

setup-test: $(VENV)/.test-deps

demo: setup
	$(BIN)/hsearch index examples/corpus --collection $(COL)
	$(BIN)/hsearch query "how much do cats sleep?" --collection $(COL) --mode dense+sparse -k 3
	$(BIN)/hsearch query "Wie lange schlafen Katzen?" --collection $(COL) --mode all -k 3 --explain

test: setup-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(COL)
