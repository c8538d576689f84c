# The two commands of the README: `make demo` and `make test`.
# Both create .venv and install tunekit (and, for tests, the Debian packages
# the tests use) on a fresh machine; nothing needs installing by hand.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tunekit-installed

.PHONY: install system-deps demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,export,postgres,dashboard,lightning]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

demo: install
	$(PY) -m tunekit demo

lint: install
	$(VENV)/bin/ruff check tunekit tests benchmarks
	$(VENV)/bin/ruff format --check tunekit tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

# Two workers (one per core); tests are grouped by file so module fixtures are built once.
test: install system-deps lint typecheck
	$(PY) -m pytest -q -n 2 --dist loadfile tests

bench: install
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
