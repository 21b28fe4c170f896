# The two commands of the README. Both set everything up on a fresh machine (Python 3.11+):
#   make lab    JupyterLab on the notebooks
#   make test   the whole test suite (ruff, mypy, unit, integration, notebooks)
# and a longer run of one suite:
#   make difftest  2,000 scenarios through the simulator and a live cluster, compared
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.labkit-installed

.PHONY: lab test install serve clean difftest

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labkit needs Python 3.11 or newer; set PYTHON=python3.11 (or newer)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

lab: $(STAMP)
	$(BIN)/labkit lab

test: $(STAMP)
	$(BIN)/python -m pytest

difftest: $(STAMP)
	LABKIT_DIFFTEST_EXAMPLES=$${LABKIT_DIFFTEST_EXAMPLES:-2000} \
		$(BIN)/python -m pytest tests/test_difftest.py -o timeout=0 -k agrees_with_the_simulator

serve: $(STAMP)
	$(BIN)/labkit serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
