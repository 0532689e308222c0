# dmask: two entry points on a fresh Debian 12 machine, run as root.
#   make run   install everything and start the gateway with config/gateway.yaml
#   make test  install everything and run the test suite (unit + integration)
# Re-running is fast: each step leaves a stamp and only re-runs when its inputs change.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gateway.yaml
APT_PACKAGES := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglib2.0-0 \
	orthanc orthanc-dicomweb dcmtk dicom3tools openssl python3 python3-venv \
	tesseract-ocr tesseract-ocr-eng fonts-dejavu-core fonts-liberation postgresql-15
STAMPS := .make

.PHONY: run test lint install apt venv bench bench-scale-out clean

run: install var/pseudonym.key
	$(BIN)/dmask serve --config $(CONFIG)

# The example configuration reads its pseudonym key from here; made once (0600, var/ 0700),
# never overwritten. Order-only on the venv: a reinstall does not make a new key.
var/pseudonym.key: | $(STAMPS)/venv
	$(BIN)/dmask keygen $@

test: install lint
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

# Lint, import order and types; both are configured in pyproject.toml.
lint: install
	$(BIN)/ruff check gateway tools tests bench
	$(BIN)/mypy

install: $(STAMPS)/apt $(STAMPS)/venv

apt: $(STAMPS)/apt
venv: $(STAMPS)/venv

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@# The Debian packages start a system Orthanc on 4242/8042 and a PostgreSQL cluster on 5432;
	@# the tests start their own.
	@-if command -v service >/dev/null 2>&1; then service orthanc stop >/dev/null 2>&1 || true; fi
	@-if command -v service >/dev/null 2>&1; then service postgresql stop >/dev/null 2>&1 || true; fi
	@touch $@

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools<81' wheel
	$(BIN)/pip install -q -e '.[audit,dev,postgresql]'
	$(BIN)/pip check
	@touch $@

# Benchmarks run as modules of the repository, importing tests.support like the tests do; they
# print their figures, and `make bench BENCH_ARGS=--record` also appends them to
# docs/results.md as dated sections.
BENCH_ARGS ?=

bench: install
	$(BIN)/python -m bench.deid $(BENCH_ARGS)
	$(BIN)/python -m bench.mask $(BENCH_ARGS)
	$(BIN)/python -m bench.video $(BENCH_ARGS)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)
	$(BIN)/python -m bench.text $(BENCH_ARGS)

# The scale-out queue's benchmarks start a PostgreSQL 15 server of their own (Debian's binaries).
bench-scale-out: install
	$(BIN)/python -m bench.cluster $(BENCH_ARGS)
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

clean:
	rm -rf $(STAMPS) $(VENV) var
