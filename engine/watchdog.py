"""A stall watchdog: ends a worker that stops making progress, so that the launcher ends the
job instead of every worker waiting forever (NCCL and HCCL collectives have no timeout, and a
stopped or deadlocked worker leaves the others blocked in the next all-reduce).

The loop arms it before every wait (`expect(what, step)`): for the input, a train step, an
evaluation, a checkpoint. If the armed wait lasts longer than its allowance, a thread writes one
line naming the rank, the step and what it was waiting for, and exits the process with
STALL_EXIT_CODE; checkpoints on disk are untouched (TensorFlow writes them under a temporary name
first), so the same command resumes from the last one.
"""
import os
import threading
import time

STALL_EXIT_CODE = 3


class NoWatchdog:
    """What the loop arms where no watchdog runs (a run without a stall timeout)."""

    def expect(self, what: str, step: int, *, long: bool = False, busy_seconds: float = 0.0):
        pass


class Watchdog:
    def __init__(self, *, timeout: float, long_timeout: float, rank: int, command: str = "train",
                 exit_fn=os._exit):
        self.timeout, self.long_timeout, self.rank = timeout, long_timeout, rank
        self.command, self._exit = command, exit_fn
        self._lock = threading.Lock()
        self._deadline = None
        self._what, self._step, self._allowance = "", 0, 0.0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self._thread.start()

    def expect(self, what: str, step: int, *, long: bool = False, busy_seconds: float = 0.0):
        """Arms the watchdog for a wait on `what` at `step`: the timeout on top of
        `busy_seconds` (the time the wait is expected to take when all is well: a call of
        several steps at the measured step time), or the long one if that is more and `long`
        (the first step's tracing, evaluation, checkpoints)."""
        allowance = max(self.long_timeout if long else 0, self.timeout + busy_seconds)
        with self._lock:
            self._what, self._step, self._allowance = what, step, allowance
            self._deadline = time.monotonic() + allowance

    def pause(self):
        """Disarms the watchdog until the next `expect`: for waits that bound themselves, such
        as an elastic rendezvous (Horovod's elastic timeout ends it)."""
        with self._lock:
            self._deadline = None

    def stop(self):
        self._stopped.set()
        self._thread.join(timeout=5)

    def _watch(self):
        while not self._stopped.wait(min(1.0, self.timeout / 4)):
            with self._lock:
                late = self._deadline is not None and time.monotonic() > self._deadline
                what, step, allowance = self._what, self._step, self._allowance
            if late:
                message = (f"{self.command}: rank {self.rank} stalled: no progress for "
                           f"{allowance:.0f} s after step {step}, waiting for {what}; exiting so "
                           f"that the launcher ends the job (rerun the same command to resume "
                           f"from the last checkpoint)\n")
                os.write(2, message.encode())
                self._exit(STALL_EXIT_CODE)
                return
