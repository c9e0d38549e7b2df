# `make serve`: set up, create the demo key on first run, serve on 127.0.0.1:8000.
# `make test`:  set up, lint, run the whole test suite.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup serve test lint bench clean

setup: $(STAMP)

# Re-runs only when the project's dependencies change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

serve: setup
	@key=$$($(BIN)/imagerecognize keys demo) || exit 1; \
	echo ""; \
	echo "  imagerecognize on http://$(HOST):$(PORT)/api/v2/  (try it: http://$(HOST):$(PORT)/)"; \
	echo "  demo API key: $$key"; \
	echo "  try: curl -F apikey=$$key -F type=detect_faces -F file=@photo.jpg http://$(HOST):$(PORT)/api/v2/"; \
	echo ""
	$(BIN)/imagerecognize serve --host $(HOST) --port $(PORT)

lint: setup
	$(BIN)/ruff check server models scripts tests

test: setup lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
