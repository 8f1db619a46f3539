# Every target sets up .venv when it is missing, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup kernels browser demo test soak bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=25.1"
	$(PY) -m pip install -q -e ".[all]" --group test
	touch $(STAMP)

# numba compiles each kernel once per installation (about 40 s on 2 cores) and caches it;
# doing it here means no test subprocess or live session compiles on its own.
kernels: $(STAMP)
	$(PY) -m mepkit.warm

demo: kernels
	$(PY) -m mepkit_cli.main demo

# The live view's tests load its page in Debian's headless chromium (CI: a fresh Debian
# machine, as root). Quick when it is there; without it those tests fail under CI=true.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the live view's browser tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || echo "could not install chromium (not root?): the browser tests will be skipped, or fail under CI"; }

test: kernels browser
	$(PY) -m pytest -q -m "not soak" -p no:cacheprovider

soak: kernels
	$(PY) -m pytest -q -m soak -p no:cacheprovider

bench: kernels
	$(PY) benchmarks/filters.py
	$(PY) benchmarks/features.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/clocks.py
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/mapping.py
	$(PY) benchmarks/thresholds.py
	$(PY) benchmarks/onsets.py
	$(PY) benchmarks/onsets_real.py
	$(PY) benchmarks/startup.py

clean:
	rm -rf $(VENV) build *.egg-info
