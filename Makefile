# recgym developer entry points. Only Python is needed beforehand.
# Torch is pinned here (not in pyproject) so a plain install does not pull a multi-GB CUDA build.
# For CUDA: make test TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu126"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Extras installed with recgym: dev (pytest, ruff) and ray (the Ray backend, so its tests run; CPU wheel, about
# 360 MB installed, a minute or two to install). `make install EXTRAS=dev` skips Ray.
EXTRAS ?= dev,ray

.PHONY: install test test-all bench lint clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]" "$(TORCH_SPEC)"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: $(VENV)/.installed
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(VENV)/bin/recgym bench --suite quick
	$(VENV)/bin/recgym report runs/quick

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check recgym tests examples

clean:
	rm -rf $(VENV) runs .pytest_cache
