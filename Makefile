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

# Both tiers run in two pytest processes (pytest-xdist): most tests keep one core busy (tracing
# and small steps), so two ran the fast tier in about 0.6 of one's time on the 2-core box. In
# `test-all`, the smoke sweeps that share a saved_models folder go to one process (loadgroup);
# the multi-worker tests, which start two TensorFlow processes and time them, run after the
# rest, on their own.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS)

test-all: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "slow or not slow" \
		--ignore=tests/test_multi_worker.py
	$(PY) -m pytest -m "slow or not slow" tests/test_multi_worker.py

study: $(STAMP)
	for experiment in $(STUDY); do $(PY) -m launch.sweep --experiment=$$experiment || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
