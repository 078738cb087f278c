"""Dispatching train steps: one per call, or k inside one tf.function (steps_per_loop); the
watchdog armed before each wait, time split into waiting for input and computing.

A step that a debugging window runs on its own (engine/controller.py's SingleStep) is always the
plain one-step call, marked for the profiler or replaced by an instrumented copy as the window
asks; the runner holds no window state of its own.
"""
import time
from typing import Optional

import tensorflow as tf

from engine import observe, run_format
from engine.controller import SingleStep


class StepRunner:
    """`loops`: the run calls several steps at a time (steps_per_loop auto or above 1); its
    single steps (the timed ones at a segment's start, a last step before a boundary) then run
    as a loop of one, so that the net is traced once, not once per kind of call (a DenseNet-121
    trace takes seconds). Single steps with `loops` off, and the steps a window runs on its own,
    run as the plain step: its input wait is timed apart. `plain_single_steps_until`: the last
    debugging window's end step (0: none; engine/hooks/windows.py's last_window_end); single
    steps up to it run as the plain step too, so that it traces at the segment's first step,
    long before the window, and the input's prefetch buffer, refilled while a trace runs, is
    drained again by the time the window opens."""

    def __init__(self, *, train_step, iterator, meter: observe.Throughput, watchdog,
                 step_seconds=lambda: None, loops=False, plain_single_steps_until=0):
        self.train_step, self.iterator, self.meter = train_step, iterator, meter
        self.watchdog = watchdog
        self.step_seconds = step_seconds  # the measured step time (hooks.StepTimer), None before
        self.loops, self.plain_single_steps_until = loops, plain_single_steps_until
        self._traced = set()       # the kinds of call (single, loop) already traced

    def __call__(self, step: int, steps: int, single: Optional[SingleStep] = None) -> None:
        """Dispatches steps step+1..step+steps; the first call of each kind traces (longer)."""
        # The same choice on every worker (Horovod matches all-reduces by name): from `loops`
        # and the windows' steps only, never from what this worker alone does (marking,
        # dumping).
        if single is None and steps == 1 and (
                not self.loops or step < self.plain_single_steps_until):
            single = SingleStep()
        kind = "single" if single else "loop"
        first = kind not in self._traced
        self._traced.add(kind)
        if single:
            self._single(step, first, single)
            return
        start = time.perf_counter()
        # A call of several steps shows no progress until it returns: its allowance is the
        # stall timeout on top of its other steps at the measured step time (the long one
        # while no step time is known).
        measured = self.step_seconds()
        what = f"{steps} train steps in one call" if steps > 1 else "the train step"
        self.watchdog.expect(f"{what} (input, device or all-reduce)", step,
                             long=first or (measured is None and steps > 1),
                             busy_seconds=(steps - 1) * (measured or 0.0))
        self.train_step.loop(self.iterator, tf.constant(steps))
        self.meter.add(steps, None, time.perf_counter() - start)

    def _single(self, step, first, single: SingleStep):
        with run_format.step_marker(step + 1, enabled=single.marked):
            wait_start = time.perf_counter()
            self.watchdog.expect("the input pipeline", step, long=first)
            with run_format.input_wait_marker(enabled=single.marked):
                images, labels = next(self.iterator)
            waited = time.perf_counter() - wait_start
            self.watchdog.expect("the train step (the device or the gradient all-reduce)",
                                 step, long=first or single.slow)
            (single.function or self.train_step)(images, labels)
            if single.marked:  # so that each marked step holds its own device time
                self.train_step.first_nonfinite_step()
        self.meter.add(1, waited, time.perf_counter() - wait_start - waited)
