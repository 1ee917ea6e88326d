# Set-up and the two everyday commands. `make demo` and `make test` each build the virtual
# environment first when needed: torch is installed from its pinned CPU wheel before anything
# else, so pip never pulls a multi-GB CUDA build, then atriumseg with its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
# PyPI's Linux torch is the CUDA build; the CPU wheel comes from PyTorch's CPU index, unless pip is given local
# wheels (PIP_FIND_LINKS, as on the project's machines). `make setup TORCH_INDEX=` installs from PyPI instead.
TORCH_INDEX ?= $(if $(PIP_FIND_LINKS),,https://download.pytorch.org/whl/cpu)

.PHONY: setup demo test test-fast lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_PIN)"
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: setup
	$(BIN)/atriumseg demo --output demo-output

# One test process per core (at most 4, each with its share of torch's threads): the suite's slow tests
# are single processes waiting on services or one-thread training, so two cores halve its time.
XDIST := -n auto --maxprocesses 4 --dist worksteal

test: setup
	$(BIN)/python -m pytest -q $(XDIST)

# Everything but the tests marked slow (training, ranks, processes, services): 1.5 min on 2 float32 cores.
test-fast: setup
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo-output
