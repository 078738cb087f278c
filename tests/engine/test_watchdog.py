"""The stall watchdog ends a worker that makes no progress, with one line, in time."""
import sys
import threading
import time

import pytest

from engine.watchdog import STALL_EXIT_CODE, Watchdog
from tests import helpers

pytestmark = [pytest.mark.smoke, pytest.mark.serial]


def test_it_fires_after_the_allowance_and_not_before():
    fired = []
    done = threading.Event()
    guard = Watchdog(timeout=1, long_timeout=3, rank=2,
                     exit_fn=lambda code: fired.append((code, time.monotonic())) or done.set())
    start = time.monotonic()
    guard.expect("a long wait", 5, long=True)
    assert done.wait(10)
    assert fired[0][0] == STALL_EXIT_CODE and 3 <= fired[0][1] - start < 5
    guard.stop()


def test_a_call_of_several_steps_gets_the_timeout_on_top_of_its_expected_time():
    """A call of 5 steps at a measured 0.5 s each: 1 s of timeout after the 2 s its other 4
    steps take, not 5 timeouts (which would hide a stall for a long time on slow steps)."""
    fired = []
    done = threading.Event()
    guard = Watchdog(timeout=1, long_timeout=1, rank=0,
                     exit_fn=lambda code: fired.append(time.monotonic()) or done.set())
    start = time.monotonic()
    guard.expect("5 train steps in one call", 10, busy_seconds=4 * 0.5)
    assert done.wait(10)
    assert 3 <= fired[0] - start < 4.5
    guard.stop()


def test_rearming_keeps_it_quiet():
    fired = []
    guard = Watchdog(timeout=1, long_timeout=1, rank=0, exit_fn=fired.append)
    for step in range(12):
        guard.expect("the train step", step)
        time.sleep(0.25)
    guard.stop()
    assert not fired


def test_a_stalled_input_pipeline_ends_the_process_with_one_line(tmp_path):
    import os
    import subprocess
    probe = os.path.join(os.path.dirname(__file__), "stall_probe.py")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, probe, str(tmp_path)], capture_output=True,
                          text=True, timeout=240, cwd=helpers.REPO,
                          env=dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == STALL_EXIT_CODE, proc.stdout + proc.stderr
    assert "finished" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train: rank 0 stalled: no progress for 3 s after step 3, waiting "
                           "for the input pipeline;"), last
    assert time.monotonic() - start < 120


def test_a_pause_keeps_it_quiet_until_it_is_armed_again():
    """An elastic rendezvous is bounded by Horovod's own timeout: the watchdog pauses through it,
    then the next wait arms it as before."""
    fired = []
    done = threading.Event()
    guard = Watchdog(timeout=0.5, long_timeout=0.5, rank=0,
                     exit_fn=lambda code: fired.append(time.monotonic()) or done.set())
    guard.expect("the train step", 3)
    guard.pause()
    assert not done.wait(2)
    start = time.monotonic()
    guard.expect("the train step", 4)
    assert done.wait(5) and 0.5 <= fired[0] - start < 2
    guard.stop()
