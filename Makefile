# `make serve`: install what serving needs, create the demo key on first run, prepare every
#               model (a line each), then serve on 127.0.0.1:8000 and print "ready".
# `make test`:  add the test tools, lint, run the whole test suite.
# `make test-fast`: the same for the tests not marked slow (no live server, no heavy model):
#               the import rules and every route's envelope, in under a minute; keep it so.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup setup-test serve test test-fast lint bench clean

setup: $(STAMP)
setup-test: $(TEST_STAMP)

# Re-run only when the project's dependencies change.
$(STAMP): pyproject.toml constraints.txt scripts/install-runtime.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	PYTHON=$(BIN)/python scripts/install-runtime.sh --editable
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

serve: setup
	@key=$$($(BIN)/imagerecognize keys demo) || exit 1; \
	echo ""; \
	echo "  imagerecognize on http://$(HOST):$(PORT)/api/v2/  (try it: http://$(HOST):$(PORT)/)"; \
	echo "  demo API key: $$key"; \
	echo "  try: curl -F apikey=$$key -F type=detect_faces -F file=@photo.jpg http://$(HOST):$(PORT)/api/v2/"; \
	echo ""; \
	echo "  Preparing every model first, a line each (the first start converts each network"; \
	echo "  once: under a minute on a small CPU; later starts: seconds). It answers once it"; \
	echo "  says it is ready, on a line of its own."; \
	echo ""
	$(BIN)/imagerecognize serve --host $(HOST) --port $(PORT)

lint: setup-test
	$(BIN)/ruff check server models scripts tests

test: setup-test lint
	$(BIN)/python -m pytest

test-fast: setup-test lint
	$(BIN)/python -m pytest -m 'not slow'

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
