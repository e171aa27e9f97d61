# make demo   : create .venv if missing, install, pretrain (once) the demo base model and run two weeks of the DAG
# make test   : install what the tests need and run the whole suite, live tests included (this is what CI runs)
# make test-live: only the live tests: a real airflow standalone on PostgreSQL and a headless browser
# make screenshots: the README's pictures into docs/: the trigger form from the live tests, the grid and the
#   promotion history from the demo's real runs (devtools/demo_screenshots.py; runs `make demo` first if needed)
# make airflow: the Airflow UI with this DAG loaded (airflow standalone, project-local AIRFLOW_HOME)
# make bench-tiny : every benchmark in its seconds-long smoke mode
# make bench-gpu : every GPU figure in one run (bench/gpu.py, ≤ 8 minutes on one H200; see ../shared/GPU.md)
# make gpu-kit : what a lent GPU machine lacks, to carry there: .whl/ (wheels at this checkout's versions, for its
#   Python 3.12) and .cache/demo/base-model (devtools/gpu_kit.py)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR):$(CURDIR)/plugins

.PHONY: demo test test-live screenshots airflow bench-tiny bench-gpu gpu-kit clean

$(VENV)/.installed: requirements.txt requirements-train.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

gpu-kit: $(VENV)/.installed
	$(PY) -m devtools.gpu_kit

demo: $(VENV)/.installed
	$(PY) -m demo.run

test: $(VENV)/.dev-installed
	$(PY) -m pytest

# The live tests (tests/live): a real airflow standalone on a throwaway PostgreSQL cluster, the REST API, the
# trigger form and the history page in Debian's headless Chromium (apt-get install chromium postgresql;
# Playwright never downloads a browser here). They are part of `make test` too.
test-live: $(VENV)/.dev-installed
	$(PY) -m pytest -m live tests/live

screenshots: $(VENV)/.dev-installed
	MT_SCREENSHOTS=$(CURDIR)/docs $(PY) -m pytest -m live tests/live
	$(PY) -m devtools.demo_screenshots --out $(CURDIR)/docs

airflow: $(VENV)/.installed
	$(PY) -m devtools.standalone

bench-tiny: $(VENV)/.dev-installed
	for b in bench/*.py; do $(PY) $$b --tiny || exit 1; done

# On a lent GPU machine there is no .venv: the interpreter that has the packages runs it (PYTHON=...).
bench-gpu:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) bench/gpu.py

clean:
	rm -rf .demo .airflow .cache/demo
