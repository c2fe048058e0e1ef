# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test venv clean

$(BIN)/hatoba: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,speed]'
	touch $@

venv: $(BIN)/hatoba

# Serve every listener on port offset 10000 from ./demo (created on first run).
run: venv
	@bash scripts/demo-init.sh $(BIN)/hatoba demo
	$(BIN)/hatoba -c demo/hatoba.toml serve

# Install the Debian test peers if missing (postfix, swaks, openssl), then the suite.
test: venv
	@bash scripts/install-test-peers.sh
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo build *.egg-info
