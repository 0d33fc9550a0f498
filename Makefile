# Two commands do all set-up on a fresh machine:
#   make demo   build the environment, process a 21-minute recording through Airflow, query it
#   make test   build the environment, run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: env demo test bench clean

env: $(STAMP)

# torch/torchvision come from the machine's local wheel store when pip has one configured;
# everything is pinned by constraints.txt, so an install is the same everywhere.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -c "import vigil, torch, torchvision.ops, ultralytics, av, airflow.sdk; print('environment ready')"
	touch $@

demo: env
	YOLO_OFFLINE=1 $(BIN)/python -m vigil.orchestration.demo --footage tests/data/one-by-one-person-detection.mp4 --dags dags

test: env
	YOLO_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf .demo .airflow-test .pytest_cache
