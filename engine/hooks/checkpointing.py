"""Checkpoints on a step cadence, and stop requests (SIGTERM, SIGINT) that end in one."""
import signal

from engine.cadence import next_boundary
from engine.controller import Hook


class StopRequested(Exception):
    """SIGTERM or SIGINT: the loop checkpointed the step it reached (args[0]) and stopped."""


class PeriodicCheckpoint(Hook):
    """A checkpoint every `every` steps (None: none), except at an epoch's end, where EpochEnd
    writes one after averaging the workers' statistics. `save(step)` writes it."""

    def __init__(self, *, every, steps_per_epoch, save):
        self.every, self.steps_per_epoch, self.save = every, steps_per_epoch, save

    def next_boundary(self, step):
        return next_boundary(step, limit=2**62, every=(self.every,)) if self.every else None

    def at_boundary(self, step):
        if step % self.steps_per_epoch:
            self.save(step)


class StopOnSignal(Hook):
    """Turns SIGTERM and SIGINT into a checkpoint and StopRequested at the next boundary, which
    every worker reaches at the same step (`any_worker(flag)` agrees across them). The previous
    handlers come back when training ends."""

    rides_along = True
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, *, any_worker, save):
        self.any_worker, self.save = any_worker, save
        self.received = None
        self._previous = {}

    def begin(self, step):
        def request_stop(signum, frame):
            self.received = signum
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, request_stop)

    def at_boundary(self, step):
        if self.any_worker(self.received is not None):
            self.save(step)
            raise StopRequested(step)

    def end(self, step):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
