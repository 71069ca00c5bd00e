# Everything sets itself up in a virtualenv in .venv: `make run` installs the package alone (what running a
# pipeline needs), `make test`, `lint` and `typecheck` every extra and the development tools on top.
VENV      ?= .venv
PY        := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install test lint typecheck run bench clean system-deps

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e .
	touch $@

# The dev install includes the plain one, so it refreshes both stamps: `make run` after it installs nothing.
$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install -q -e '.[dev]'
	touch $@ $(RUN_STAMP)

install: $(DEV_STAMP)

# The tests start a real redis-server; install Debian's when it is missing and we may (root).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null 2>&1 || \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; }; \
	  else echo "make test needs redis-server: sudo apt-get install redis-server (or brew install redis)"; exit 1; fi; }

test: $(DEV_STAMP) system-deps
	$(PY) -m pytest

# The fault-injection suite at its nightly size: DynamoDB and Firestore at every effect in every mode, the
# extended config (executables, entwine) over the whole batch everywhere. Its tally is kept in FAULTS_TALLY.
FAULTS_TALLY ?= tests/faults/tally.txt

.PHONY: test-faults
test-faults: $(DEV_STAMP) system-deps
	AGGLO_FAULTS_NIGHTLY=1 AGGLO_FAULTS_TALLY=$(FAULTS_TALLY) $(PY) -m pytest -p no:cacheprovider tests/faults

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check agglo_core handlers tests benchmarks

# Files and strictness: [tool.mypy] in pyproject.toml.
typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

run: $(RUN_STAMP)
	rm -rf out
	$(VENV)/bin/agglo run -c pipelines/basic.json -i events/basic.jsonl

bench: $(DEV_STAMP)
	POWERTOOLS_LOG_LEVEL=ERROR $(PY) -m benchmarks.run > benchmarks/last-run.md.new
	mv benchmarks/last-run.md.new benchmarks/last-run.md
	cat benchmarks/last-run.md

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis

# --- sam build (template.yaml: Metadata BuildMethod makefile) ---------------------------------------------
# sam runs this in a copy of the repository (or in place with --build-in-source) with ARTIFACTS_DIR set.
# The package is agglo_core/, the parts of handlers/ that run on Lambda (LAMBDA_HANDLERS: no daemons, no
# authoring tools, no Cloud Functions entry point) and pipelines/, plus the runtime dependencies as Linux
# wheels for the function's architecture (arm64; LAMBDA_PLATFORM=manylinux2014_x86_64 for x86_64). boto3 is
# included so that it matches the botocore that aws-xray-sdk pulls in; snapshot-restore-py registers the
# SnapStart hooks.
#
# Everything is shipped compiled: Lambda's code directory is read-only, so a module without bytecode is
# compiled from source at every cold start. A .pyc is read only by the Python minor version that wrote it,
# so LAMBDA_BUILD_PYTHON (python$(LAMBDA_PYTHON), as in `sam build --use-container`) must be the runtime's
# version: the build refuses otherwise. LAMBDA_BYTECODE=no builds without bytecode instead (with a warning).
# unchecked-hash: the interpreter trusts the .pyc without comparing it to its source's mtime (the zip's
# timestamps are not the build's); the source paths recorded for tracebacks are /var/task's.
#
# The configs shipped are LAMBDA_CONFIGS (every pipelines/*.json unless set), each as pipelines/<its name>.
# The dependencies are what `agglo requirements --for aws` derives from them: LAMBDA_REQUIREMENTS (what the
# function itself imports) and the client library of each external system's connector (redis for a redis://
# store, google-cloud-pubsub for a Pub/Sub tee…), cryptography when a config uses entwine. The derivation
# validates the configs, so it runs as the compiler does (below): LAMBDA_BUILD_PYTHON on the artefact's
# dependencies, LAMBDA_REQUIREMENTS installed first; when a config needs more, everything is installed again
# in one resolution, so that the shipped packages agree with one another.
#
# Each shipped config ships with its compiled plan, pipelines/<name>.plan/ (`agglo compile -o`), which
# the function loads at init instead of validating its config: no pydantic at cold start. The compiler runs
# from this tree with LAMBDA_BUILD_PYTHON on the artefact's dependencies, so that Python must be the
# runtime's version and architecture (as the bytecode needs anyway). A config elsewhere (AGGLO_PLAN, an
# s3:// config) is compiled the same way; LAMBDA_PLAN=no builds without plans (each cold start then
# validates its config, saying so in a warning).
LAMBDA_PYTHON       ?= 3.13
LAMBDA_PLATFORM     ?= manylinux2014_aarch64
LAMBDA_BUILD_PYTHON ?= $(shell command -v python$(LAMBDA_PYTHON) || command -v python3)
LAMBDA_BYTECODE     ?= yes
LAMBDA_PLAN         ?= yes
LAMBDA_TASK_ROOT    ?= /var/task
LAMBDA_CONFIGS      ?= $(wildcard pipelines/*.json)
LAMBDA_HANDLERS     := handlers/__init__.py handlers/aws_lambda.py handlers/runtime handlers/sources handlers/connectors
LAMBDA_REQUIREMENTS := 'pydantic>=2.6' 'orjson>=3.9' 'google-re2>=1.1,<2' 'boto3>=1.34' 'aws-lambda-powertools>=3.0' \
                       'aws-xray-sdk>=2.12' 'snapshot-restore-py>=1.0'
LAMBDA_PIP_INSTALL  := python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-compile \
                       --target "$(ARTIFACTS_DIR)" --platform $(LAMBDA_PLATFORM) --implementation cp \
                       --python-version $(LAMBDA_PYTHON) --only-binary=:all:

.PHONY: build-PipelineFunction
build-PipelineFunction:
	test -n "$(ARTIFACTS_DIR)"
	@built_by=$$($(LAMBDA_BUILD_PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	if [ "$(LAMBDA_BYTECODE)" = yes ] && [ "$$built_by" != "$(LAMBDA_PYTHON)" ]; then \
	  echo "build-PipelineFunction: the function runs Python $(LAMBDA_PYTHON) but LAMBDA_BUILD_PYTHON" \
	       "($(LAMBDA_BUILD_PYTHON)) is Python $$built_by, whose bytecode Python $(LAMBDA_PYTHON) ignores." \
	       "Build with python$(LAMBDA_PYTHON) (sam build --use-container, or LAMBDA_BUILD_PYTHON=...)," \
	       "or LAMBDA_BYTECODE=no to ship sources only (slower cold starts)." >&2; \
	  exit 1; fi
	mkdir -p "$(ARTIFACTS_DIR)/handlers" "$(ARTIFACTS_DIR)/pipelines"
	cp -R agglo_core "$(ARTIFACTS_DIR)/"
	cp $(LAMBDA_CONFIGS) "$(ARTIFACTS_DIR)/pipelines/"
	cp -R $(LAMBDA_HANDLERS) "$(ARTIFACTS_DIR)/handlers/"
	find "$(ARTIFACTS_DIR)" -name __pycache__ -type d -prune -exec rm -rf {} +
	$(LAMBDA_PIP_INSTALL) $(LAMBDA_REQUIREMENTS)
	@needed=$$(PYTHONPATH="$(CURDIR):$(ARTIFACTS_DIR)" $(LAMBDA_BUILD_PYTHON) -m handlers.local requirements \
	  --for aws $(LAMBDA_CONFIGS)) || { \
	  echo "build-PipelineFunction: cannot derive the requirements of $(LAMBDA_CONFIGS) (why is above: a config" \
	       "agglo refuses, or $(LAMBDA_BUILD_PYTHON) cannot import the artefact's dependencies)" >&2; exit 1; }; \
	more=$$(printf '%s\n' "$$needed" | grep -vxF $(foreach r,$(LAMBDA_REQUIREMENTS),-e $(r)) || true); \
	if [ -n "$$more" ]; then \
	  echo "build-PipelineFunction: the configs also need:" $$more >&2; \
	  $(LAMBDA_PIP_INSTALL) --upgrade $$needed || exit 1; fi
	rm -rf "$(ARTIFACTS_DIR)/bin"
	# Some dependencies ship their own test suites (certifi, which requests pulls in): the function runs none.
	find "$(ARTIFACTS_DIR)" -mindepth 2 -type d \( -name tests -o -name test \) -prune -exec rm -rf {} +
	@if [ "$(LAMBDA_PLAN)" = yes ]; then \
	  for config in "$(ARTIFACTS_DIR)"/pipelines/*.json; do \
	    PYTHONPATH="$(CURDIR):$(ARTIFACTS_DIR)" $(LAMBDA_BUILD_PYTHON) -m handlers.local compile -c "$$config" \
	      -o "$${config%.json}.plan" || { \
	    echo "build-PipelineFunction: cannot compile $$config (why is above: a config agglo refuses, or," \
	         "if $(LAMBDA_BUILD_PYTHON) cannot import the artefact's dependencies, not the runtime's Python" \
	         "and architecture); LAMBDA_PLAN=no builds without compiled plans (every cold start then" \
	         "validates its config)" >&2; exit 1; }; \
	  done; \
	else echo "build-PipelineFunction: LAMBDA_PLAN=$(LAMBDA_PLAN): no compiled plans; every cold start" \
	  "validates its config" >&2; fi
	@if [ "$(LAMBDA_BYTECODE)" = yes ]; then \
	  $(LAMBDA_BUILD_PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash \
	    -s "$(ARTIFACTS_DIR)" -p "$(LAMBDA_TASK_ROOT)" "$(ARTIFACTS_DIR)"; \
	else echo "build-PipelineFunction: LAMBDA_BYTECODE=$(LAMBDA_BYTECODE): no bytecode; every cold start compiles" \
	  "the package from source" >&2; fi
