# The two commands: `make demo` and `make test`. Both set up what they need first.
# TF selects the lane for `make setup`: 2.21 (default, .venv) or 2.15 (.venv-tf2.15, Gaudi's stack).
TF ?= 2.21
VENV := .venv
VENV215 := .venv-tf2.15
PYTEST_ARGS ?=

.PHONY: setup setup-all browser test lint test-current test-tf2.15 demo clean

setup:
	bash launch/build/setup_env.sh $(TF)

setup-all:
	bash launch/build/setup_env.sh 2.21
	bash launch/build/setup_env.sh 2.15

# Headless Chromium for the TensorBoard Profile-tab test (apt-get, as root, when missing).
browser:
	bash launch/build/install_chromium.sh

# ruff (configured in pyproject.toml), the full suite on the current lane, then the `smoke`
# subset on the TF 2.15 lane. A style violation fails `make test` before any test runs.
test: setup-all browser
	$(MAKE) lint
	$(MAKE) test-current
	$(MAKE) test-tf2.15

lint:
	$(VENV)/bin/ruff check .

test-current:
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-tf2.15:
	$(VENV215)/bin/python -m pytest -m smoke $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python -m launch.demo

clean:
	rm -rf $(VENV) $(VENV215) .pytest_cache demo_run
