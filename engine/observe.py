"""What a run measures and shows as it goes: throughput, memory, a live progress line, and the
one place where the loop reads values back from the device. The files it writes are in
engine/run_format.py."""
import resource
import sys
import time

import numpy as np
import tensorflow as tf


def to_host(values):
    """Device values (tensors or variables) as numpy, in one call. Every read of device state
    by the loop goes through here: a read waits for the device, so the loop makes them only at
    event boundaries (tests count them by wrapping this function)."""
    return [np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in values]


def peak_device_memory_mb():
    """Peak memory of the first accelerator where TensorFlow reports it (GPU, HPU), else None."""
    for kind in ("GPU", "HPU"):
        devices = tf.config.list_logical_devices(kind)
        if devices:
            try:
                peak = tf.config.experimental.get_memory_info(devices[0].name)["peak"]
            except (ValueError, KeyError, tf.errors.OpError):
                return None
            return round(peak / 2**20, 1)
    return None


def peak_host_memory_mb():
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


class Throughput:
    """Global images/s per log interval and over the run, the first interval (tracing and
    warm-up) excluded from the run's figure; time waiting for input vs. computing."""

    def __init__(self, global_batch):
        self.global_batch = global_batch
        self._steps = self._wait = self._compute = 0.0
        self._start = time.perf_counter()
        self._intervals = 0
        self._timed_steps = self._timed_seconds = 0.0

    def add(self, steps, waited, computed):
        self._steps += steps
        self._wait = None if waited is None or self._wait is None else self._wait + waited
        self._compute += computed

    def interval(self):
        now = time.perf_counter()
        seconds = max(now - self._start, 1e-9)
        rate = self._steps * self.global_batch / seconds
        out = {"images_per_sec": round(rate, 2),
               "input_wait_sec": None if self._wait is None else round(self._wait, 3),
               "compute_sec": round(self._compute, 3)}
        self._intervals += 1
        if self._intervals > 1:
            self._timed_steps += self._steps
            self._timed_seconds += seconds
        self._steps, self._wait, self._compute, self._start = 0, 0.0, 0.0, now
        return out

    def overall(self):
        """Images/s over all intervals after the first (None if there was only one)."""
        if not self._timed_seconds:
            return None
        return round(self._timed_steps * self.global_batch / self._timed_seconds, 2)


class Console:
    """What the chief prints: log lines, and one status line rewritten in place on a terminal
    (the progress line), which a log line first blanks so that it prints on a clean line.
    Other workers print nothing (`enabled` False)."""

    def __init__(self, *, print_fn=print, out=None, enabled=True):
        self.print_fn, self.out, self.enabled = print_fn, out or sys.stdout, enabled
        self.showing = False

    def log(self, *args, **kwargs):
        if not self.enabled:
            return
        if self.showing:
            self.out.write("\r" + " " * 79 + "\r")
            self.out.flush()
        self.print_fn(*args, **kwargs)

    def status(self, text):
        """Rewrites the status line (the next log line blanks it)."""
        if self.enabled:
            self.out.write("\r" + text)
            self.out.flush()
            self.showing = True

    def end_status(self):
        """Leaves the status line as it is and moves to a new line."""
        if self.showing:
            self.out.write("\n")
            self.out.flush()
            self.showing = False
