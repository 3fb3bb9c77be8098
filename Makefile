# Two commands: `make run` and `make test`. Everything they need is installed here, from PyPI
# and npm by name, into .venv (the emulator, its sandbox packages, the test tools) and .sdk/
# (each official SDK in its own isolated place).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
SDK := .sdk
SDK_V1 := together==1.5.35
SDK_V2 := together==2.42.0
SDK_TS := together-ai@0.52.0
EXAMPLES := $(SDK)/examples
HOST ?= 127.0.0.1
PORT ?= 8787
STATE_DIR ?= .state
PYTEST_ARGS ?=

.PHONY: run test bench check setup sdks clean bwrap

run: $(VENV)/.installed bwrap
	$(VENV)/bin/tci-emulator serve --host $(HOST) --port $(PORT) --state-dir $(STATE_DIR)

test: $(VENV)/.installed sdks $(EXAMPLES)/.installed bwrap
	TCI_SDK_DIR=$(abspath $(SDK)) $(PY) -m pytest $(PYTEST_ARGS)
	$(EXAMPLES)/bin/python -m pytest -p no:cacheprovider examples/agent_tool

bench: $(VENV)/.installed bwrap
	$(PY) -m tci_emulator.bench $(BENCH_ARGS)

check: $(VENV)/.installed
	$(PY) -m mypy

setup: $(VENV)/.installed sdks $(EXAMPLES)/.installed bwrap

# Sessions run in bubblewrap namespaces (--sandbox auto): install `bwrap` where we can (root with
# apt); elsewhere say how, and the emulator runs unsandboxed with a warning.
bwrap:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else \
	    echo "bubblewrap (bwrap) is missing: install the 'bubblewrap' package (apt, dnf, pacman)" \
	      "or sessions will not be sandboxed" >&2; \
	  fi; }

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e '.[sandbox,test]'
	touch $@

sdks: $(SDK)/v1/.installed $(SDK)/v2/.installed $(SDK)/ts/.installed

$(SDK)/v1/.installed: Makefile
	test -x $(SDK)/v1/bin/python || $(PYTHON) -m venv $(SDK)/v1
	$(SDK)/v1/bin/python -m pip --disable-pip-version-check -q install '$(SDK_V1)'
	touch $@

$(SDK)/v2/.installed: Makefile
	test -x $(SDK)/v2/bin/python || $(PYTHON) -m venv $(SDK)/v2
	$(SDK)/v2/bin/python -m pip --disable-pip-version-check -q install '$(SDK_V2)'
	touch $@

# examples/ are downstream projects: their tests run in an environment of their own, with the
# v2 SDK and tci-emulator from this checkout (and its pytest plugin), as a user's would.
$(EXAMPLES)/.installed: setup.cfg pyproject.toml Makefile
	test -x $(EXAMPLES)/bin/python || $(PYTHON) -m venv $(EXAMPLES)
	$(EXAMPLES)/bin/python -m pip --disable-pip-version-check -q install '$(SDK_V2)' pytest -e .
	touch $@

$(SDK)/ts/.installed: Makefile
	mkdir -p $(SDK)/ts
	cd $(SDK)/ts && (test -f package.json || npm init -y >/dev/null)
	cd $(SDK)/ts && npm install --no-audit --no-fund --silent '$(SDK_TS)'
	touch $@

clean:
	rm -rf $(VENV) $(SDK) .pytest_cache .mypy_cache .hypothesis *.egg-info
