# Two entry points for a fresh machine: `make run` and `make test`.
# CPU machines pin torch==2.13.0 (the local CPU build); a machine with an NVIDIA GPU keeps the
# torch it already has (venv with --system-site-packages, nothing pulled from the network).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
EXTRAS ?= test,faiss,encode,plot

.PHONY: run test test-slow setup clean bench

$(VENV)/.installed: setup.cfg pyproject.toml Makefile
ifeq ($(HAS_GPU),1)
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . || $(PY) -m pip install -q --no-deps -e .
else
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "torch==$$($(PY) -c 'import torch; print(torch.__version__.split("+")[0])')" -e ".[$(EXTRAS)]"
endif
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/graphrec train

# one pytest worker per core when pytest-xdist is there (tests pin one thread per worker)
XDIST = $$($(PY) -c 'import os, xdist; print("-n", min(4, os.cpu_count() or 1), "--dist loadfile")' 2>/dev/null)

test: setup
	$(PY) -m pytest -q $(XDIST)

test-slow: setup
	$(PY) -m pytest -q -m slow $(XDIST); rc=$$?; if [ $$rc -eq 5 ]; then echo "no slow tests"; exit 0; fi; exit $$rc

bench: setup
	$(VENV)/bin/graphrec bench --models lightgcn,freedom --dataset synthetic

clean:
	rm -rf $(VENV) build *.egg-info
