# `make demo` and `make test` set up everything on a fresh machine: a virtualenv in .venv with the
# pinned requirements and the package installed in editable mode.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: demo test lint bench clean venv

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -qq -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Beam -> TFRecords -> class-balanced training -> evaluation on held-out classes -> export.
demo: $(STAMP)
	$(PY) -m tfmetric.train --dataset synthetic --workdir runs/demo --overwrite

# The service's browser test drives Debian's chromium (Playwright with executable_path; browsers are
# never downloaded): installed here with apt when it is missing, so the test always runs.
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; fi

# worksteal: an idle worker takes the other's queued tests, so both end together (tests/conftest.py
# starts the modules with slow tests first).
test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest -n 2 --dist worksteal tests

# ruff's lint rules and formatting (pyproject.toml); CI runs this before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache
