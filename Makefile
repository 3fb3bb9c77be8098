# Two commands: `make run` and `make test`. Everything they need is installed here, from PyPI
# and npm by name, into .venv (the emulator, TCI's pre-installed packages, the test tools) and
# .sdk/ (each official SDK in its own isolated place). A first run downloads about 1.6 GB and
# takes several minutes; each step says what it installs, and pip shows its own progress.
# `make dist` builds the sdist and the wheel into dist/ and checks them with twine.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STEP := @printf '\n==> %s\n'
SDK := .sdk
SDK_V1 := together==1.5.35
SDK_V2 := together==2.42.0
SDK_TS := together-ai@0.52.0
EXAMPLES := $(SDK)/examples
# A Jupyter Enterprise Gateway in an environment of its own, for the tests of --kernel-gateway.
GATEWAY := .gateway
GATEWAY_PKGS := jupyter_enterprise_gateway ipykernel
HOST ?= 127.0.0.1
PORT ?= 8787
STATE_DIR ?= .state
PYTEST_ARGS ?=

.PHONY: run test bench check docs setup sdks dist clean chromium bwrap

run: $(VENV)/.installed bwrap
	$(VENV)/bin/tci-emulator serve --host $(HOST) --port $(PORT) --state-dir $(STATE_DIR)

test: $(VENV)/.installed sdks $(EXAMPLES)/.installed $(GATEWAY)/.installed chromium bwrap
	$(STEP) "running the suite"
	TCI_SDK_DIR=$(abspath $(SDK)) TCI_GATEWAY_DIR=$(abspath $(GATEWAY)) $(PY) -m pytest $(PYTEST_ARGS)
	$(EXAMPLES)/bin/python -m pytest -p no:cacheprovider examples/agent_tool

bench: $(VENV)/.installed bwrap
	$(PY) -m benchmarks $(BENCH_ARGS)

check: $(VENV)/.installed
	$(PY) -m mypy

# docs/settings.md is generated from the Config fields (a test fails while it is stale).
docs: $(VENV)/.installed
	$(PY) -m tci_emulator.settings_reference --write docs/settings.md

setup: $(VENV)/.installed sdks $(EXAMPLES)/.installed $(GATEWAY)/.installed chromium bwrap

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
	$(STEP) "$(VENV): the emulator, the packages TCI has pre-installed and the test tools (first run: about 1.6 GB, several minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar on --upgrade pip setuptools wheel
	$(PIP) install --progress-bar on -e '.[packages,test,mcp]'
	$(STEP) "$(VENV) is ready"
	touch $@

sdks: $(SDK)/v1/.installed $(SDK)/v2/.installed $(SDK)/ts/.installed

$(SDK)/v1/.installed: Makefile
	$(STEP) "$(SDK)/v1: the official Python SDK $(SDK_V1)"
	test -x $(SDK)/v1/bin/python || $(PYTHON) -m venv $(SDK)/v1
	$(SDK)/v1/bin/python -m pip --disable-pip-version-check install '$(SDK_V1)'
	touch $@

$(SDK)/v2/.installed: Makefile
	$(STEP) "$(SDK)/v2: the official Python SDK $(SDK_V2)"
	test -x $(SDK)/v2/bin/python || $(PYTHON) -m venv $(SDK)/v2
	$(SDK)/v2/bin/python -m pip --disable-pip-version-check install '$(SDK_V2)'
	touch $@

# examples/ are downstream projects: their tests run in an environment of their own, with the
# v2 SDK and tci-emulator from this checkout (and its pytest plugin), as a user's would.
$(EXAMPLES)/.installed: setup.cfg pyproject.toml Makefile
	$(STEP) "$(EXAMPLES): the example project's environment (SDK v2, pytest, this checkout)"
	test -x $(EXAMPLES)/bin/python || $(PYTHON) -m venv $(EXAMPLES)
	$(EXAMPLES)/bin/python -m pip --disable-pip-version-check install '$(SDK_V2)' pytest -e .
	touch $@

$(GATEWAY)/.installed: Makefile
	test -x $(GATEWAY)/bin/python || $(PYTHON) -m venv $(GATEWAY)
	$(GATEWAY)/bin/python -m pip --disable-pip-version-check -q install $(GATEWAY_PKGS)
	touch $@

$(SDK)/ts/.installed: Makefile
	$(STEP) "$(SDK)/ts: the official TypeScript SDK $(SDK_TS) (npm)"
	mkdir -p $(SDK)/ts
	cd $(SDK)/ts && (test -f package.json || npm init -y >/dev/null)
	cd $(SDK)/ts && npm install --no-audit --no-fund --progress=true '$(SDK_TS)'
	touch $@

# The sdist (the whole project: its tests run from it) and the wheel, checked as an index would.
dist: $(VENV)/.installed
	$(STEP) "dist/: building the sdist and the wheel"
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist .
	$(PY) -m twine check --strict dist/*

# The dashboard's browser tests drive the system's Chromium through Playwright (which downloads
# no browser here). Installed with apt when missing and root; otherwise those tests skip, saying
# so, except under CI (CI set), where a missing Chromium stops the run.
CHROMIUM_NAMES := chromium chromium-browser google-chrome google-chrome-stable
chromium:
	@if [ -n "$${TCI_CHROMIUM:-}" ] && [ -x "$${TCI_CHROMIUM}" ]; then exit 0; fi; \
	for name in $(CHROMIUM_NAMES); do command -v $$name >/dev/null 2>&1 && exit 0; done; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	elif [ -n "$${CI:-}" ]; then \
	  echo "Chromium is missing and cannot be installed (not root): the dashboard tests need it"; exit 1; \
	else \
	  echo "note: no Chromium (install chromium, or set TCI_CHROMIUM): the dashboard's browser tests will be skipped"; \
	fi

clean:
	rm -rf $(VENV) $(SDK) $(GATEWAY) .pytest_cache .mypy_cache .hypothesis *.egg-info build dist
