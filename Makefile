# dreamgen — set-up and the two README commands.
#   make demo   the whole DreamGen loop on the ToyWorld default (CPU)
#   make test   the test suite (CPU)
# The venv is (re)installed only when pyproject.toml changed: a second run takes seconds.

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl

# A working Python 3.12: $PYTHON if given, else python3.12 on PATH if it really runs (a pyenv shim
# can exist and fail), else pyenv's installed 3.12, else the usual system locations.
find_python = $(shell \
  for c in "$(PYTHON)" python3.12 \
           $$(ls -d $$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r) \
           /usr/local/bin/python3.12 /usr/bin/python3.12; do \
    [ -n "$$c" ] && "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo "$$c"; break; }; \
  done)

.PHONY: venv install demo test lint clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then \
	  py="$(call find_python)"; \
	  if [ -z "$$py" ]; then \
	    echo "error: no Python 3.12 found. Install one (e.g. 'pyenv install 3.12', 'apt install python3.12-venv'" >&2; \
	    echo "       or 'uv python install 3.12') and/or pass it: make PYTHON=/path/to/python3.12" >&2; exit 1; \
	  fi; \
	  echo "creating $(VENV) with $$py"; rm -rf $(VENV); "$$py" -m venv $(VENV) || exit 1; \
	  $(PY) -m pip install -q --upgrade pip || exit 1; \
	fi
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: venv

demo: venv
	$(VENV)/bin/dreamgen demo --out runs/demo

test: venv
	$(PY) -m pytest tests

lint: venv
	$(VENV)/bin/ruff check dreamgen dreamgenbench tests scripts IDM_dump

clean-venv:
	rm -rf $(VENV)
