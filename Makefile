# Two entry points: `make demo` (a rehearsal on the lab) and `make test` (the test suite).
# Every install goes through constraints.txt (exact versions, build backend included), so a fresh
# clone gets what CI tested; raising a pin is a commit to constraints.txt (`make constraints`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# PIP_CONSTRAINT also reaches pip's isolated build environment (setuptools for the editable build);
# PYTHONWARNINGS keeps setuptools' editable-install notice off the terminal.
PIP    := PIP_CONSTRAINT=$(CURDIR)/constraints.txt PYTHONWARNINGS=ignore $(BIN)/pip

.PHONY: demo test venv constraints clean

$(STAMP): pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -qq --upgrade pip
	$(PIP) install -qq -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/esremote demo

test: $(STAMP)
	$(BIN)/python -m pytest

# Re-resolve every dependency to its newest allowed version and write the pins (a deliberate step).
constraints:
	rm -rf $(VENV).resolve
	$(PYTHON) -m venv $(VENV).resolve
	$(VENV).resolve/bin/pip install -qq --upgrade pip setuptools
	$(VENV).resolve/bin/pip install -qq '.[dev]'
	( echo "# Exact versions of every dependency, used by the Makefile. Regenerate: make constraints"; \
	  $(VENV).resolve/bin/pip freeze --all --exclude-editable | grep -v '^esremote' ) > constraints.txt
	rm -rf $(VENV).resolve

clean:
	rm -rf $(VENV) build *.egg-info
