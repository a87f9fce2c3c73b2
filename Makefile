# The README's two commands are `make quickstart` and `make test`; both create .venv if it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test lint setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,postgres]"
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python run_study.py run studies/quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

lint: $(STAMP)
	$(BIN)/ruff check icbench tests benchmarks run_study.py

clean:
	rm -rf $(VENV) runs
