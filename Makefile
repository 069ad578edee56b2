# Two commands set up and use a fresh machine; each creates .venv from requirements.txt when missing.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: app test docs

$(VENV)/installed.stamp: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

app: $(VENV)/installed.stamp
	$(PY) -m streamlit run app.py

test: $(VENV)/installed.stamp
	$(PY) -m pytest -q tests

docs: $(VENV)/installed.stamp
	$(PY) -m imbal_core methods --markdown > docs/methods.md
