# The README's two commands are `make quickstart` and `make test`; both create .venv if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint docs setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,postgres,docs]"
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python run_study.py run studies/quickstart.yaml

# The manual is built strictly first: a broken link or a page left out of mkdocs.yml fails the run; then
# the import layers (pyproject.toml, [tool.importlinter]): a module importing one above it fails it.
test: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/lint-imports && $(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check icbench tests benchmarks run_study.py

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) runs site
