"""The loop's pace, fitted to the step: how many steps one call runs, and how often workers check
for a stop request, both from the step time measured at the start of each run segment.

A stop request must end the run within seconds whatever the step time (a scheduler gives about
30 s before SIGKILL), without a collective per step; and Python's cost per call (a few ms on a
CPU) must be paid once per interval, not per step. Both need the step time, which only the run
knows: the first steps after the traced one run one per call, each a boundary, and their mean
time (averaged across workers, so that every worker derives the same cadence) sets

    stop checks every  max(1, STOP_SHARE * stop_within / step time)  steps
    steps per call     fixed, or (auto) max(1, CALL_SECONDS / step time), at most MAX_STEPS_PER_CALL

The stop check (StopOnSignal) rides along on every boundary, so the Pace's boundaries are the
stop checks. The cadence holds for the segment: a resumed segment measures again.
"""
import math
import time
from typing import Callable, Optional

from engine.controller import Hook

# Steps timed after the traced first one (the first step of a segment traces: far longer).
CALIBRATION_STEPS = 3
# The share of --stop_within spent reaching the next check; the rest is left for the step in
# flight, the checkpoint write and a step time above the measured one.
STOP_SHARE = 0.75
# auto: steps per call so that a call lasts about this long (the progress line and the stall
# watchdog see a call as one event), at most MAX_STEPS_PER_CALL.
CALL_SECONDS = 1.0
MAX_STEPS_PER_CALL = 100


class Pace(Hook):
    """Measures the step time at a segment's start and derives the loop's cadences from it.

    `agree(seconds)` returns the value every worker uses (e.g. the average across workers);
    `steps_per_call`: a fixed number, or None for auto; `stop_within`: seconds."""

    def __init__(self, *, agree: Callable[[float], float], stop_within: float,
                 steps_per_call: Optional[int] = None, log=lambda line: None):
        self.agree, self.stop_within, self.fixed = agree, stop_within, steps_per_call
        self.log = log
        self.step_seconds = None   # agreed, once calibrated
        self.stop_every = 1
        self._timed_from = self._calibrated_at = self._clock = None

    def begin(self, step):
        self._timed_from, self._calibrated_at = step + 1, None
        self.step_seconds, self.stop_every = None, 1

    @property
    def calibrated(self) -> bool:
        return self._calibrated_at is not None

    def steps_per_call(self) -> int:
        if self.fixed:
            return self.fixed
        if not self.calibrated:
            return 1
        return max(1, min(MAX_STEPS_PER_CALL, int(CALL_SECONDS / self.step_seconds)))

    def single_steps(self, step):
        return not self.calibrated

    def next_boundary(self, step):
        if not self.calibrated:
            return step + 1
        since = step - self._calibrated_at
        return self._calibrated_at + (since // self.stop_every + 1) * self.stop_every

    def at_boundary(self, step):
        if self.calibrated:
            return
        if step == self._timed_from:
            self._clock = time.perf_counter()
        elif step == self._timed_from + CALIBRATION_STEPS:
            measured = (time.perf_counter() - self._clock) / CALIBRATION_STEPS
            self.step_seconds = max(float(self.agree(measured)), 1e-6)
            self.stop_every = max(1, math.floor(STOP_SHARE * self.stop_within
                                                / self.step_seconds))
            self._calibrated_at = step
            self.log(f"pace: {self.step_seconds:.3f} s/step measured; workers check for a "
                     f"stop request every {self.stop_every} steps (within "
                     f"{self.stop_within:g} s); {self.steps_per_call()} steps per call")
