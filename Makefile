# The two commands a newcomer needs: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test check unit integration bench image cluster-up cluster-down clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# The main job on the local default: the example repos against the local control plane.
demo: $(STAMP)
	scripts/install-system-deps
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

# Every check and every test tier; installs system packages it needs when run as root.
test: $(STAMP)
	scripts/install-system-deps
	scripts/check
	$(BIN)/python scripts/local-cluster build --real-node
	$(BIN)/python scripts/local-cluster conformance
	$(BIN)/python -m tests.integration.gitea
	$(BIN)/python -m pytest tests

check: $(STAMP)
	scripts/check

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

# The controller's OCI image archive without Docker (Debian packages + our wheels, packed with
# umoci); the last line printed is its path: `scripts/local-cluster load-image` or `ctr images
# import` take it as is. Needs root.
image: $(STAMP)
	scripts/install-system-deps
	$(BIN)/python scripts/build-image

bench: $(STAMP)
	$(BIN)/python bench/run.py

cluster-up:
	scripts/local-cluster up

cluster-down:
	scripts/local-cluster down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
