"""The loop's pace, fitted to the step, in two hooks: `StepTimer` measures the step time at the
start of each run segment, and `StopChecks` sets from it how often workers check for a stop
request and how many steps one call runs.

A stop request must end the run within seconds whatever the step time (a scheduler gives about
30 s before SIGKILL), without a collective per step; and Python's cost per call (a few ms on a
CPU) must be paid once per interval, not per step. Both need the step time, which only the run
knows: the first steps after the traced one run one per call, each a boundary, and their mean
time (averaged across workers, so that every worker derives the same cadence) sets

    stop checks every  max(1, STOP_SHARE * stop_within / step time)  steps
    steps per call     fixed, or (auto) max(1, CALL_SECONDS / step time), at most MAX_STEPS_PER_CALL

The stop check (StopOnSignal) rides along on every boundary, so StopChecks' boundaries are the
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


class StepTimer(Hook):
    """Times steps 2..1+CALIBRATION_STEPS of a segment, each a boundary of its own (a call of one
    step), and keeps the value every worker uses: `agree(seconds)`, e.g. the average across
    workers. `seconds` is None until `timed_at` (the step where timing ended)."""

    def __init__(self, *, agree: Callable[[float], float]):
        self.agree = agree
        self.seconds = self.timed_at = None
        self._first = self._clock = None

    def begin(self, step):
        self._first, self.seconds, self.timed_at = step + 1, None, None

    @property
    def last_timed_step(self) -> int:
        return self._first + CALIBRATION_STEPS

    def next_boundary(self, step):
        return step + 1 if step < self.last_timed_step else None

    def at_boundary(self, step):
        if step == self._first:
            self._clock = time.perf_counter()
        elif step == self.last_timed_step:
            measured = (time.perf_counter() - self._clock) / CALIBRATION_STEPS
            self.seconds = max(float(self.agree(measured)), 1e-6)
            self.timed_at = step


class StopChecks(Hook):
    """The cadence that the timed step sets: a boundary every `stop_every` steps from the step
    where `timer` (a StepTimer, earlier in the hook order) finished, and the steps per call
    (`steps_per_call`: a fixed number, or None for auto); `stop_within`: seconds."""

    def __init__(self, *, timer: StepTimer, stop_within: float,
                 steps_per_call: Optional[int] = None, log=lambda line: None):
        self.timer, self.stop_within, self.fixed, self.log = (timer, stop_within, steps_per_call,
                                                              log)
        self.stop_every = 1

    def begin(self, step):
        self.stop_every = 1

    def steps_per_call(self) -> int:
        if self.fixed:
            return self.fixed
        if self.timer.seconds is None:
            return 1
        return max(1, min(MAX_STEPS_PER_CALL, int(CALL_SECONDS / self.timer.seconds)))

    def next_boundary(self, step):
        start = self.timer.timed_at
        if start is None:  # the timer's last step sets the cadence
            return self.timer.last_timed_step if step < self.timer.last_timed_step else None
        return start + ((step - start) // self.stop_every + 1) * self.stop_every

    def is_check(self, step) -> bool:
        """Whether `step` is one of the stop checks, once the step is timed."""
        return self.timer.timed_at is not None and self.due(step)

    def at_boundary(self, step):
        if step != self.timer.timed_at:
            return
        self.stop_every = max(1, math.floor(STOP_SHARE * self.stop_within / self.timer.seconds))
        self.log(f"pace: {self.timer.seconds:.3f} s/step measured; workers check for a stop "
                 f"request every {self.stop_every} steps (within {self.stop_within:g} s); "
                 f"{self.steps_per_call()} steps per call")
