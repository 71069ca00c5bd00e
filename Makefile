# Everything sets itself up: a virtualenv in .venv with the package and its extras.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev

.PHONY: install test lint run clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check agglo_core handlers tests

run: $(STAMP)
	rm -rf out
	$(VENV)/bin/agglo run -c pipelines/basic.json -i events/basic.jsonl

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
