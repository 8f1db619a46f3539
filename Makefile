# Every target sets up .venv when it is missing, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup kernels demo test soak bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e ".[all]" --group test
	touch $(STAMP)

# numba compiles each kernel once per installation (about 40 s on 2 cores) and caches it;
# doing it here means no test subprocess or live session compiles on its own.
kernels: $(STAMP)
	$(PY) -m mepkit.dsp.warm

demo: kernels
	$(PY) -m mepkit_cli.main demo

test: kernels
	$(PY) -m pytest -q -m "not soak" -p no:cacheprovider

soak: kernels
	$(PY) -m pytest -q -m soak -p no:cacheprovider

bench: kernels
	$(PY) benchmarks/filters.py
	$(PY) benchmarks/features.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/clocks.py
	$(PY) benchmarks/latency.py

clean:
	rm -rf $(VENV) build *.egg-info
