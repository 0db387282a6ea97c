# Two commands for a fresh machine: `make demo` (index the sample corpus, run queries) and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt
COL := .hsearch-demo

.PHONY: demo serve test setup setup-test clean heads

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

# Each query is a whole new process (imports, model, collection): `time` shows what a user waits for.
demo: setup
	$(BIN)/hsearch index examples/corpus --collection $(COL)
	time $(BIN)/hsearch query "how much do cats sleep?" --collection $(COL) -k 3
	time $(BIN)/hsearch query "Wie lange schlafen Katzen?" --collection $(COL) --mode dense+sparse -k 3 --explain

# One warm process: the demo collection over HTTP on 127.0.0.1:8765 (search page at /, API docs at /docs).
serve: setup
	$(PIP) -e ".[server]"
	$(BIN)/hsearch index examples/corpus --collection $(COL)
	$(BIN)/hsearch serve --collection $(COL) --port 8765

test: setup-test
	$(BIN)/python -m pytest -q

# Retrain the heads shipped for e5-small (hsearch/data/heads/e5-small/MODEL_CARD.md), CPU: about 25 min
# of token states and 20 min of training on 2 cores. Debian's package descriptions (downloaded from
# deb.debian.org, SHA256-checked) as unsupervised title -> body pairs in 8 languages, plus QMSum's
# train split (never its test split); the result is copied into the package (identity colbert head:
# the trained one measured worse, see the model card).
QMSUM ?= ../shared/datasets/qmsum
HEADS_OUT ?= heads-e5-small
heads: setup
	$(BIN)/python scripts/debian_descriptions.py --out $(HEADS_OUT).data/debian
	$(BIN)/hsearch train --model e5-small-base --out $(HEADS_OUT) --beir $(QMSUM):train \
		--pairs $(HEADS_OUT).data/debian/corpus.jsonl --limit 24000 --max-batch 16 --hard-negatives 2
	$(BIN)/python scripts/ship_heads.py $(HEADS_OUT) --colbert identity

clean:
	rm -rf $(VENV) $(COL)
