# The two commands: `make demo` and `make test`. Both set up what they need first.
# TF selects the lane for `make setup`: 2.21 (default, .venv) or 2.15 (.venv-tf2.15, Gaudi's stack).
TF ?= 2.21
VENV := .venv
VENV215 := .venv-tf2.15
PYTEST_ARGS ?=
# Tests run this many at a time (pytest-xdist), a test file to one process so that its fixtures are
# built once; those marked `serial` (setup.cfg) run after them, one at a time. 1: all one at a time.
TEST_PROCESSES ?= 2
PARALLEL := $(if $(filter-out 1,$(TEST_PROCESSES)),-n $(TEST_PROCESSES) --dist loadfile)

.PHONY: setup setup-all browser sshd test lint check-lock lock test-current test-cpu-kinds \
	test-tf2.15 demo clean

setup:
	bash launch/build/setup_env.sh $(TF)

setup-all:
	bash launch/build/setup_env.sh 2.21
	bash launch/build/setup_env.sh 2.15

# Headless Chromium for the TensorBoard Profile-tab test (apt-get, as root, when missing).
browser:
	bash launch/build/install_chromium.sh

# openssh-server for the multi-host test's two sshd "hosts" (apt-get, as root, when missing).
sshd:
	bash launch/build/install_sshd.sh

# ruff (configured in pyproject.toml), each lane against its lock, the full suite on the current
# lane, its CPU-dependent tests again as on each other kind of CPU, then the `smoke` subset on the
# TF 2.15 lane. A style violation or a lane that differs from its lock fails `make test` before
# any test runs.
test: setup-all browser sshd
	$(MAKE) lint
	$(MAKE) check-lock
	$(MAKE) test-current
	$(MAKE) test-cpu-kinds
	$(MAKE) test-tf2.15

lint:
	$(VENV)/bin/ruff check .

check-lock:
	$(VENV)/bin/python launch/build/lock.py check 2.21
	$(VENV215)/bin/python launch/build/lock.py check 2.15

# Resolve each lane's requirements anew (PyPI) into launch/build/constraints-tf*.txt; the next
# setup installs the new lock.
lock: setup-all
	$(VENV)/bin/python launch/build/lock.py refresh 2.21
	$(VENV215)/bin/python launch/build/lock.py refresh 2.15

test-current:
	$(VENV)/bin/python -m pytest -m "not serial" $(PARALLEL) $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The tests marked cpu_kind, once as on each kind of CPU whose runs the engine decides differently
# (tests/cpu_kinds.py: native bf16, AVX-512 VNNI without bf16, AVX2 only), whatever this one is.
CPU_KINDS := native-bf16 vnni plain
test-cpu-kinds:
	set -e; for kind in $(CPU_KINDS); do \
		$(VENV)/bin/python -m pytest -m cpu_kind --cpu-kind=$$kind $(PYTEST_ARGS); done

test-tf2.15:
	$(VENV215)/bin/python -m pytest -m "smoke and not serial" $(PARALLEL) $(PYTEST_ARGS)
	$(VENV215)/bin/python -m pytest -m "smoke and serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]

demo: setup
	$(VENV)/bin/python -m launch.demo

clean:
	rm -rf $(VENV) $(VENV215) .pytest_cache demo_run
