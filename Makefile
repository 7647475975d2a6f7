VENV ?= .venv
PY = $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: setup.py package.xml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev,train,runtime]'
	touch $@

MISSION ?= goals
DEMO_CONFIG = $(if $(filter tasks,$(MISSION)),config/mrta_swarm.yaml,config/sim_swarm.yaml)

# make demo: 8 robots fly into a circle; make demo MISSION=tasks: coalition task allocation
demo: $(VENV)/.installed
	$(VENV)/bin/swarm-rl launch $(DEMO_CONFIG) --lockstep --out results/demo

test: $(VENV)/.installed
	$(VENV)/bin/ruff check sim swarm_rl ros_nodes firmware_export launch tests
	$(PY) -m pytest -q tests

bench: $(VENV)/.installed
	$(VENV)/bin/swarm-rl bench sim

clean:
	rm -rf $(VENV) build/ *.egg-info results/
