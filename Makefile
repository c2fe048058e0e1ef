# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test venv clean dist

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

# A wheel in dist/: `pip install dist/hatoba-*.whl` installs hatoba on any machine
# (its dependencies come from PyPI). pip builds it, in a throw-away build environment.
dist: venv
	rm -f dist/hatoba-*.whl
	$(BIN)/pip wheel -q --disable-pip-version-check --no-deps -w dist .
	@ls dist/hatoba-*.whl

clean:
	rm -rf $(VENV) demo build dist *.egg-info src/*.egg-info
