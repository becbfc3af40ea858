# `make demo` and `make test` bootstrap .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 1

# The study's experiments (docs/results.md), in the order `make study` runs them: later
# sweeps reuse the runs earlier ones finished (the same settings, the same result).
STUDY := budget_calibration self_distillation ensemble_size augmentation capacity \
	temperature_alpha gan_growth data_recycling success initialization loss_surface optimization \
	closing_the_gap

.PHONY: demo test test-all study install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m launch.distill

# The fast tier in two processes (pytest-xdist): its tests are many and short, so two ran it
# in about 0.6 of one's time on the 2-core box. The slow tier stays in one process: its
# multi-process and kill/resume tests time their own subprocesses.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS)

test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

study: $(STAMP)
	for experiment in $(STUDY); do $(PY) -m launch.sweep --experiment=$$experiment || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
