# privproxy: the entry points an operator and CI use.
# `make run` and `make test` work on a fresh Debian 12 machine as root.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
SIP    ?= udp:127.0.0.1:5060
TRUNK  ?= sip:127.0.0.1:5080;transport=udp
DB     ?= ./privproxy.db

.PHONY: install sipp run test check lint bench demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 venv support missing: installing python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv python3-pip && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

sipp:
	@command -v sipp >/dev/null 2>&1 || { \
	  echo "installing sipp (Debian package sip-tester)"; \
	  apt-get update -qq && apt-get install -y -qq sip-tester; }

run: install
	$(BIN)/privproxy serve --sip $(SIP) --sip tcp:127.0.0.1:5060 --trunk '$(TRUNK)' --db $(DB)

test: install sipp
	$(PY) -m pytest -q

lint: install
	$(BIN)/ruff check proxy bindings tests benchmarks
	$(BIN)/ruff format --check proxy bindings tests benchmarks
	$(BIN)/mypy --strict proxy bindings

check: lint test

bench: install sipp
	$(PY) benchmarks/parse.py

demo: install sipp
	$(PY) -m proxy.demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
