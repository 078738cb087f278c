"""Dispatching train steps: one per call, or k inside one tf.function (steps_per_loop); the
watchdog armed before each wait, time split into waiting for input and computing.

The debugging windows (engine/hooks/windows.py) change how a single step runs: `plain_until`
keeps it the plain step up to a window's end (traced at the segment's start), `marking` puts
profiler annotations around it and waits for it (so that each step holds its own time), and
`step_function` replaces the step with an instrumented copy (tensor dumps).
"""
import time

import tensorflow as tf

from engine import observe, run_format


class StepRunner:
    """`loops`: the run calls several steps at a time (steps_per_loop auto or above 1); its
    single steps (the Pace's timed ones, a last step before a boundary) then run as a loop of one,
    so that the net is traced once, not once per kind of call (a DenseNet-121 trace takes
    seconds). Single steps with `loops` off, or up to a debugging window's end, run as the plain
    step: its input wait is timed apart, and the windows mark or replace it."""

    def __init__(self, *, train_step, iterator, meter: observe.Throughput, watch,
                 step_seconds=lambda: None, loops=False):
        self.train_step, self.iterator, self.meter, self.watch = train_step, iterator, meter, watch
        self.step_seconds = step_seconds  # the measured step time (hooks.Pace), None before
        self.loops = loops
        self.marking = False       # profiler annotations, and a wait for each step
        self.plain_until = 0       # single steps up to this step: the plain step, loops or not
        self.step_function = None  # an instrumented copy of the step, or None
        self.slow_steps = False    # the instrumented copy is slower: the long allowance
        self._traced = set()       # the kinds of call (single, loop) already traced

    def __call__(self, step: int, steps: int) -> None:
        """Dispatches steps step+1..step+steps; the first call of each kind traces (longer)."""
        # The same choice on every worker (Horovod matches all-reduces by name): from `loops`
        # and `plain_until` only, never from what this worker alone does (marking, dumping).
        single = steps == 1 and (not self.loops or step < self.plain_until)
        kind = "single" if single else "loop"
        first = kind not in self._traced
        self._traced.add(kind)
        if single:
            self._single(step, first)
            return
        start = time.perf_counter()
        # A call of several steps shows no progress until it returns: its allowance is the
        # stall timeout on top of its other steps at the measured step time (the long one
        # while no step time is known).
        measured = self.step_seconds()
        what = f"{steps} train steps in one call" if steps > 1 else "the train step"
        self.watch(f"{what} (input, device or all-reduce)", step,
                   long=first or (measured is None and steps > 1),
                   busy_seconds=(steps - 1) * (measured or 0.0))
        self.train_step.loop(self.iterator, tf.constant(steps))
        self.meter.add(steps, None, time.perf_counter() - start)

    def _single(self, step, first):
        with run_format.step_marker(step + 1, enabled=self.marking):
            wait_start = time.perf_counter()
            self.watch("the input pipeline", step, long=first)
            with run_format.input_wait_marker(enabled=self.marking):
                images, labels = next(self.iterator)
            waited = time.perf_counter() - wait_start
            self.watch("the train step (the device or the gradient all-reduce)", step,
                       long=first or self.slow_steps)
            (self.step_function or self.train_step)(images, labels)
            if self.marking:  # so that each marked step holds its own device time
                self.train_step.first_nonfinite_step()
        self.meter.add(1, waited, time.perf_counter() - wait_start - waited)
