# vmimages.multistore: development and CI entry points (`make help`).
#
# Every target that needs the tools depends on `setup`, which is idempotent and fast once done.
# scripts/test-all.sh passes SETUP= so that `make test` runs setup once, not per suite.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# The venv's tools (ansible-*, pytest, python3.X) first, as if it were activated.
export PATH := $(BIN):$(PATH)

SETUP ?= setup
# Extra arguments: make unit PYTEST_ARGS='-k store -x'; make integration TARGETS='store image';
# make sanity SANITY_ARGS='--test pylint'
PYTEST_ARGS ?=
TARGETS ?=
SANITY_ARGS ?=

.PHONY: help setup test unit faults torture integration lab lab-test molecule lab-up lab-down ceph-up ceph-down ceph-test ceph cinder-up cinder-down cinder-test cinder ee runner sanity lint demo bench build constraints clean distclean

help:
	@echo "make setup        Debian packages + .venv (pinned requirements) + collection symlink"
	@echo "make test         setup, labs, then unit, integration, lab, ceph, cinder, ee, runner, sanity, lint; summary (what CI runs)"
	@echo "make unit         pytest tests/unit              [PYTEST_ARGS=...]"
	@echo "make faults       pytest tests/faults: kill -9 at a sample of points, concurrent runs, full disk (root; ~5 min)"
	@echo "make torture      tests/faults' kill -9 points at full size (KILL_POINTS=210, seed KILL_SEED; ~40 min)"
	@echo "make integration  ansible-test integration       [TARGETS='name ...']"
	@echo "make lab-test     pytest tests/lab: real hosts in the nspawn lab (root; ~10 s warm, ~100 s cold base build)"
	@echo "make molecule     molecule test of roles/store_host and roles/image_catalog on the lab (root; ~5 min)"
	@echo "make lab-up       create lab LAB_NAME=dev with LAB_HOSTS=central,edge1,edge2 (root); make lab-down"
	@echo "make ceph-up      start a 1-node Ceph in CEPH_DIR=/tmp/vmimages-ceph-dev, print cluster.json; make ceph-down"
	@echo "make ceph-test    pytest tests/ceph -m ceph (real Ceph: mon, mgr, OSD, radosgw; ~20 s; CEPH_LAB_DIR reuses one)"
	@echo "make cinder-up    start OpenStack Cinder (2 RBD back ends) in CINDER_DIR=/tmp/vmimages-cinder-dev on CEPH_DIR's Ceph; make cinder-down"
	@echo "make cinder-test  pytest tests/cinder -m cinder (real Cinder + Ceph, os-brick; ~2 min cold; CINDER_LAB_DIR reuses one)"
	@echo "make ee           pytest tests/ee: the AWX execution environment (ansible-builder create, EE dependencies)"
	@echo "make runner       pytest tests/runner: playbooks and AWX credential types under ansible-runner (root; ~2 min)"
	@echo "make sanity       ansible-test sanity            [SANITY_ARGS='--test pylint']"
	@echo "make lint         ansible-lint + antsibull-changelog lint"
	@echo "make demo         run playbooks/demo.yml on localhost (inventories/local)"
	@echo "make bench        run every bench/*.py with the venv's python"
	@echo "make build        build the collection tarball into build/"
	@echo "make constraints  re-resolve constraints.txt from requirements.txt (fresh temp venv)"
	@echo "make clean        remove test output and caches;  make distclean: also .venv"

setup:
	@bash scripts/setup.sh

test:
	@bash scripts/test-all.sh

unit: $(SETUP)
	@rc=0; $(BIN)/python -m pytest tests/unit $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "unit: no unit tests collected yet (tests/unit/**/test_*.py)"; rc=0; fi; \
	exit $$rc

# the `faults` suite of `make test`: a sample of the kill -9 points (KILL_POINTS), concurrent playbooks, full disks
faults: $(SETUP)
	$(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

# the long run of the kill -9 points; KILL_SEED=N repeats a run (each point prints its seed)
KILL_POINTS ?= 210
torture: $(SETUP)
	KILL_POINTS=$(KILL_POINTS) $(BIN)/python -m pytest tests/faults/test_kill_points.py $(PYTEST_ARGS)

integration: $(SETUP)
	@bash scripts/run-integration.sh $(TARGETS)

LAB_NAME ?= dev
LAB_HOSTS ?= central,edge1,edge2

lab-test: $(SETUP)
	$(BIN)/python -m pytest tests/lab -m lab $(PYTEST_ARGS)

molecule: $(SETUP)
	cd roles/store_host && PATH=$(BIN):$$PATH $(BIN)/molecule test
	cd roles/image_catalog && PATH=$(BIN):$$PATH $(BIN)/molecule test

# the suite `make test` runs on the lab: the lab itself, site.yml end to end, the store_host role
lab: lab-test molecule

lab-up: $(SETUP)
	$(BIN)/python tests/lab/lab.py create --name $(LAB_NAME) --hosts $(LAB_HOSTS)

lab-down:
	$(BIN)/python tests/lab/lab.py destroy --name $(LAB_NAME)

CEPH_DIR ?= /tmp/vmimages-ceph-dev

ceph-up:
	@python3 tests/ceph/cephlab.py install
	@python3 tests/ceph/cephlab.py start --dir $(CEPH_DIR) --json
	@echo "reuse it in tests: CEPH_LAB_DIR=$(CEPH_DIR) make ceph-test" >&2

ceph-down:
	python3 tests/ceph/cephlab.py stop --dir $(CEPH_DIR) --purge

ceph-test: $(SETUP)
	$(BIN)/python -m pytest tests/ceph -m ceph $(PYTEST_ARGS)

# the `ceph` suite of `make test`
ceph: ceph-test

CINDER_DIR ?= /tmp/vmimages-cinder-dev

# Cinder runs on CEPH_DIR's cluster: started first (a running one is only re-checked)
cinder-up:
	@python3 tests/ceph/cephlab.py install
	@python3 tests/ceph/cephlab.py start --dir $(CEPH_DIR) >/dev/null
	@python3 tests/cinder/cinderlab.py install
	@python3 tests/cinder/cinderlab.py start --dir $(CINDER_DIR) --ceph-dir $(CEPH_DIR) --json
	@echo "reuse it in tests: CINDER_LAB_DIR=$(CINDER_DIR) make cinder-test" >&2

cinder-down:
	python3 tests/cinder/cinderlab.py stop --dir $(CINDER_DIR) --purge

cinder-test: $(SETUP)
	$(BIN)/python -m pytest tests/cinder -m cinder $(PYTEST_ARGS)

# the `cinder` suite of `make test`
cinder: cinder-test

# the `ee` suite of `make test`: execution-environment.yml and meta/ee-* (meta/README-ee.md)
ee: $(SETUP)
	$(BIN)/python -m pytest tests/ee $(PYTEST_ARGS)

# the `runner` suite of `make test`: playbooks run by ansible-runner as AWX runs jobs, the AWX credential types
runner: $(SETUP)
	$(BIN)/python -m pytest tests/runner $(PYTEST_ARGS)

sanity: $(SETUP)
	@bash scripts/run-sanity.sh $(SANITY_ARGS)

lint: $(SETUP)
	@rc=0; \
	echo "lint: ansible-lint"; $(BIN)/ansible-lint $(if $(CI),--nocolor) || rc=1; \
	echo "lint: antsibull-changelog lint"; $(BIN)/antsibull-changelog lint && echo "changelog fragments OK" || rc=1; \
	exit $$rc

demo: $(SETUP)
	$(BIN)/ansible-playbook -i inventories/local playbooks/demo.yml

bench: $(SETUP)
	@shopt -s nullglob; files=(bench/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "bench: no bench/*.py yet"; exit 0; fi; \
	rc=0; for f in "$${files[@]}"; do \
		echo "==> $(VENV)/bin/python $$f"; $(BIN)/python "$$f" || { echo "bench: $$f FAILED"; rc=1; }; \
	done; exit $$rc

build: $(SETUP)
	@mkdir -p build
	$(BIN)/ansible-galaxy collection build --force --output-path build

constraints:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	/usr/bin/python3 -m venv --system-site-packages "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$$(grep -E '^pip==' requirements.txt)"; \
	grep -v -- '^-c ' requirements.txt > "$$tmp/requirements.txt"; \
	"$$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check -r "$$tmp/requirements.txt"; \
	{ echo "# Full resolved set of Python packages for .venv (generated by \`make constraints\` from requirements.txt; do not edit by hand)."; \
	  "$$tmp/venv/bin/python" -m pip freeze --local --disable-pip-version-check | grep -v '^pip=='; } > constraints.txt; \
	echo "constraints.txt updated: review 'git diff constraints.txt', then 'make setup'"

clean:
	rm -rf tests/output .pytest_cache build changelogs/.plugin-cache.yaml vmimages-multistore-*.tar.gz
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
