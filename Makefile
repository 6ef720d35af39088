# The README's commands.  Each sets the machine up first (idempotent), so a
# fresh Debian/Ubuntu machine needs nothing else, run as root.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNDIR ?= /run/moduled-dev
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup setup-bench run install test bench lint clean

setup:
	@bash scripts/setup.sh

setup-bench:
	@EXTRAS=test,bench bash scripts/setup.sh

run: setup
	@bash scripts/run.sh $(RUNDIR)

# moduled as a systemd service: a venv in /opt/moduled, /usr/local/bin links,
# the unit, /etc/moduled (PREFIX, BINDIR, SYSCONFDIR, UNITDIR, DESTDIR).
install:
	@bash scripts/install.sh

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Every benchmark runs; the target fails at the end if one missed a target.
bench: setup-bench
	@failed=; for b in bench/*.py; do echo "== $$b"; $(PY) $$b || failed="$$failed $$b"; done; \
	  if [ -n "$$failed" ]; then echo "bench: targets missed in:$$failed"; exit 1; fi

lint:
	@EXTRAS=dev bash scripts/setup.sh
	$(PY) -m ruff check src tests bench examples
	$(PY) -m ruff format --check src tests bench examples
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build dist .pytest_cache
