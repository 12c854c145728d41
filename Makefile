# Two commands set everything up (see README "Quick start"):
#   make run   - create/reuse .venv, install pinned requirements, start the app
#   make test  - the same plus dev requirements, Chromium and PostgreSQL, then the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test bench browser postgres clean

$(VENV)/.runtime-installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime-installed
	$(PY) -m streamlit run app/main.py --server.port $(PORT) --browser.gatherUsageStats false

browser:
	bash scripts/ensure_chromium.sh

postgres:
	bash scripts/ensure_postgres.sh

test: $(VENV)/.dev-installed browser postgres
	$(PY) -m pytest

bench: $(VENV)/.runtime-installed
	$(PY) -m metarep_core bench --json

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
