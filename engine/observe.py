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


class Progress:
    """One line rewritten in place on a terminal: step, loss, images/s, ETA."""

    def __init__(self, total_steps, *, start_step=0, enabled=True):
        self.total, self.enabled, self.start_step = total_steps, enabled, start_step
        self.start = time.perf_counter()
        self.loss = None

    def update(self, step, meter):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0  # this process's steps
        eta = (self.total - step) / rate if rate > 0 else 0.0
        images = rate * meter.global_batch
        loss = "" if self.loss is None else f"loss {self.loss:.4f} | "
        sys.stdout.write(f"\rstep {step}/{self.total} | {loss}{images:6.1f} img/s | "
                         f"ETA {int(eta) // 60:d}:{int(eta) % 60:02d}   ")
        sys.stdout.flush()

    def clear(self):
        """Blanks the line so that another message prints on a clean line."""
        if self.enabled:
            sys.stdout.write("\r" + " " * 79 + "\r")
            sys.stdout.flush()

    def close(self):
        if self.enabled:
            sys.stdout.write("\n")
            sys.stdout.flush()


