# One-command set-up on a bare Debian machine with Python 3.11 (root, registries only).
#   make demo  - virtual environment + CPU torch + sd_widgets, then JupyterLab on the quickstart
#   make test  - same set-up, Debian's chromium if missing, then the whole suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sdw-installed
DEMO_STAMP := $(VENV)/.sdw-demo-installed
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# One pin file holds torch's version and the CPU index (requirements/torch-cpu.txt); it is `-r`
# for the first install and `-c` for every later one. Where that index cannot be reached, one
# try per lookup instead of pip's five with back-off.
TORCH := requirements/torch-cpu.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_RETRIES ?= 1

.PHONY: setup demo test test-unit test-notebooks test-browser test-binder lint bench browser-deps js-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }

# The CPU build of torch is pinned in ONE place, requirements/torch-cpu.txt (version and CPU
# index), and installed first so that no other requirement can pull a CUDA build.
# `make demo` installs only what the demo needs (the `demo` extra: JupyterLab and a kernel);
# `make setup` / `make test` the whole test toolchain (the `test` extra).
$(DEMO_STAMP): $(PY) pyproject.toml $(TORCH)
	$(PY) -m pip install -r $(TORCH)
	$(PY) -m pip install -c $(TORCH) -e ".[demo]"
	$(PY) -c "import sd_widgets._kernels as kernels; kernels.warm()"  # compile once, now
	touch $(DEMO_STAMP)

$(STAMP): $(PY) pyproject.toml $(TORCH)
	$(PY) -m pip install -r $(TORCH)
	$(PY) -m pip install -c $(TORCH) -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
	  else echo "chromium is missing: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi; \
	fi

# Node (the JS unit tests) and npm (the pinned TypeScript checker): Debian's packages if missing
js-deps:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y nodejs npm; \
	  else echo "node/npm are missing: run 'sudo apt-get install -y nodejs npm'" >&2; exit 1; fi; \
	fi

# the front end's build tools, pinned in package.json / package-lock.json (dev only, not shipped):
# esbuild bundles static/*.js into the one file the widget ships (`npm run build`), tsc type-checks
JS_STAMP := node_modules/.sdw-installed
$(JS_STAMP): package.json package-lock.json | js-deps
	npm ci --no-audit --no-fund
	touch $@

demo: $(DEMO_STAMP)
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) notebooks/01_quickstart.ipynb

# formatting, lint (docstring and annotation rules for the package) and types (the package
# ships py.typed); configuration in pyproject.toml
lint: setup $(JS_STAMP)
	$(PY) -m ruff format --check sd_widgets tests benchmarks
	$(PY) -m ruff check sd_widgets tests benchmarks
	$(PY) -m mypy sd_widgets
	node tests/js/typecheck.mjs

test-unit: setup
	$(PY) -m pytest -m "not browser" tests

test-notebooks: setup
	$(PY) -m pytest --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg -p no:randomly

# The Explorer's pure front-end functions (static/*.js), with Node's own test runner; also checks
# that the committed bundle (static/bundle/) is what `npm run build` makes of the sources
test-js: $(JS_STAMP)
	node --test tests/js/

test-browser: setup browser-deps
	$(PY) -m pytest -m browser tests

test: setup browser-deps lint test-js
	$(MAKE) --no-print-directory test-binder
	$(PY) -m pytest tests
	$(PY) -m pytest --nbval notebooks --nbval-sanitize-with notebooks/sanitize.cfg

# The Binder environment cannot drift from the package: a fresh virtual environment built from
# binder/ exactly as Binder builds it must run the quickstart notebook (about 1.5-2.5 minutes).
test-binder: $(PY)
	PYTHON=$(PYTHON) bash binder/check.sh

# Each benchmark prints its measured ratios and PASS/FAIL per target; a missed target does not
# stop the others (the '-' prefix), and make reports which ones exited non-zero.
bench: setup browser-deps
	-$(PY) benchmarks/bench_compare.py --check
	-$(PY) benchmarks/bench_load.py
	-$(PY) benchmarks/bench_stats.py
	-$(PY) benchmarks/bench_renames.py
	-$(PY) benchmarks/bench_widget.py
	-$(PY) benchmarks/bench_stale.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache tests/artifacts node_modules
