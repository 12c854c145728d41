# Two commands set everything up (see README "Quick start"):
#   make run   - create/reuse .venv, install pinned requirements, start the app
#   make test  - the same plus dev requirements, Chromium, PostgreSQL and HAProxy, then the whole suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test bench browser postgres haproxy clean

$(VENV)/.runtime-installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# .streamlit/config.toml (read from this directory) keeps the server offline: headless,
# no usage statistics, no external-IP lookup at start-up. app/serve.py is `streamlit run`
# with the heavy imports done before the server listens.
run: $(VENV)/.runtime-installed .streamlit/config.toml
	$(PY) -m app.serve run app/main.py --server.port $(PORT)

browser:
	bash scripts/ensure_chromium.sh

postgres:
	bash scripts/ensure_postgres.sh

# The multi-server tests put the deployment's proxy (deploy/haproxy.cfg) in front of two app servers.
haproxy:
	bash scripts/ensure_haproxy.sh

# Two phases on a 2-core machine. First the tests that use one thread each, two at a time
# (pytest-xdist, whole files to a worker so that module fixtures are built once). Then,
# one at a time, those that take both cores themselves or time something: the browser
# (a server and Chromium), the Ray cluster, and the ones marked `alone`.
SOLO := browser or cluster or alone
test: $(VENV)/.dev-installed browser postgres haproxy
	$(PY) -m pytest -n 2 --dist loadfile -m "not ($(SOLO))"
	$(PY) -m pytest -m "$(SOLO)"

bench: $(VENV)/.runtime-installed
	$(PY) -m metarep_core bench --json

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
