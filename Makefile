# Every target sets up .venv when it is missing, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test soak bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e ".[all]" --group test
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mepkit_cli.main demo

test: $(STAMP)
	$(PY) -m pytest -q -m "not soak" -p no:cacheprovider

soak: $(STAMP)
	$(PY) -m pytest -q -m soak -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/filters.py
	$(PY) benchmarks/features.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/latency.py

clean:
	rm -rf $(VENV) build *.egg-info
