# Two commands set up and use a fresh machine; each creates .venv from requirements.txt when missing.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: app test lint docs

$(VENV)/installed.stamp: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Serves on 127.0.0.1 (.streamlit/config.toml); e.g. STREAMLIT_ARGS="--server.address 0.0.0.0" exposes it.
STREAMLIT_ARGS ?=

app: $(VENV)/installed.stamp
	$(PY) -m streamlit run app.py $(STREAMLIT_ARGS)

test: $(VENV)/installed.stamp
	@# browser tests drive Debian's Chromium; they skip with a reason if it cannot be installed
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: browser tests will be skipped"
	$(PY) -m pytest -q tests

# Style, import order, formatting and types (settings in pyproject.toml); `ruff format .` and `ruff check --fix .`
# repair most findings.
lint: $(VENV)/installed.stamp
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: $(VENV)/installed.stamp
	$(PY) -m imbal_core methods --markdown > docs/methods.md
