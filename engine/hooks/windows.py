"""The loop's two debugging windows over a range of steps: a TF profiler capture
(--profile_steps) and TF debugger tensor dumps (--dump_steps, engine/tensor_dumps.py).

Inside either window steps run on their own (the step before a window too, so that the plain
one-step call is traced there, outside the window), as the plain one-step call on every worker:
each window asks the controller for it (engine/controller.py's SingleStep). In the
profile window each step is marked for the profile and the host waits for it, so that each holds
its own time; in the dump window each step is checked, so that a bad step stops the run at once
with its ops the last ones in the dump's buffer, and the step runs through the freshly traced,
instrumented copy of the train step. Each window's images/s goes to metrics.jsonl (split PROFILE or
TENSOR_DUMPS): its cost, which launch.profile and the dump's closing log line state against the
intervals outside it.
"""
import time

import tensorflow as tf

from engine import run_format
from engine.controller import Hook, SingleStep


def last_window_end(loop_hooks) -> int:
    """The last step of the debugging windows among `loop_hooks` (0: none). Single steps up to it
    run as the plain step (StepRunner's plain_single_steps_until), so that it traces at the
    segment's start, long before the window."""
    return max((hook.window[1] for hook in loop_hooks if isinstance(hook, _Window)), default=0)


class _Window(Hook):
    """A window of steps (START, END]: opened before step START + 1, closed after END."""

    split = None

    def __init__(self, *, window, recorder, batch_size, log):
        self.window, self.recorder = window, recorder
        self.batch_size, self.log = batch_size, log
        self.segment_first_step = 0
        self._timed_from = None  # (step, time) where the window's rate is measured from

    def begin(self, step):
        self.segment_first_step = step

    def next_boundary(self, step):
        # The step before the window is a call of its own too: the one-step call is traced
        # there, outside the window, even when the steps before it ran k to a call.
        start, end = self.window
        edges = [edge for edge in (start - 1, start, end) if edge > step]
        return min(edges) if edges else None

    def single_step(self, step):
        # Every worker runs the same plain step here (Horovod matches its all-reduce by name):
        # only how it is marked or instrumented differs.
        if self.window[0] - 1 <= step < self.window[1]:
            return self.how_to_run()
        return None

    def how_to_run(self) -> SingleStep:
        return SingleStep()

    def record_rate(self, step):
        """A metrics.jsonl record of the window's steps and images/s; its window_cost."""
        if self._timed_from is None:
            return None
        first, start = self._timed_from
        self._timed_from = None
        if step <= first:
            return None
        rate = round((step - first) * self.batch_size / max(time.perf_counter() - start, 1e-9),
                     2)
        self.recorder.write(run_format.window_rate_record(
            split=self.split, step=step, first_step=first + 1,
            segment_first_step=self.segment_first_step + 1, images_per_sec=rate))
        return run_format.window_cost(self.recorder.records(), self.split, step)


class ProfileWindow(_Window):
    """Captures steps START+1..END with the TF profiler under <model_dir>/train (the chief
    only: `capture` False elsewhere)."""

    split = run_format.PROFILE

    def __init__(self, *, model_dir, capture, **window):
        super().__init__(**window)
        self.model_dir, self.capture = model_dir, capture
        self.capturing = False

    def how_to_run(self):
        return SingleStep(marked=self.capturing)

    def before_steps(self, step):
        if not self.capture:
            return
        if step == self.window[0]:
            tf.profiler.experimental.start(run_format.profiler_logdir(self.model_dir))
            self.capturing = True
            self._timed_from = (step, time.perf_counter())
            self.log(f"profiler: capturing steps {self.window[0] + 1}-{self.window[1]}, one "
                     f"step per call; read it with python -m launch.profile {self.model_dir}")
        elif step == self.window[1]:
            self.end(step)

    def end(self, step):
        """Ends the capture and records the window's rate and the run segment's first step
        (which lets launch.profile number the Horovod timeline's steps)."""
        if not self.capturing:
            return
        tf.profiler.experimental.stop()
        self.capturing = False
        self.record_rate(step)
        self.log(f"profiler: trace written under {run_format.capture_root(self.model_dir)}")


class DumpWindow(_Window):
    """`dumps` an engine.tensor_dumps.TensorDumps: every worker runs the instrumented step (so
    that all run alike), only those that `write` dump. Inside the window every step is a
    boundary, so a non-finite step stops the run at once."""

    split = run_format.TENSOR_DUMPS

    def __init__(self, *, dumps, train_step, **window):
        super().__init__(window=dumps.window, **window)
        self.dumps, self.train_step = dumps, train_step
        self._dumping = None  # the instrumented step while the window is open, where it writes
        self._last_batch = None

    def how_to_run(self):
        return SingleStep(function=self._dumping, slow=self._dumping is not None)

    def next_boundary(self, step):
        if self.dumps.active:
            return step + 1
        return super().next_boundary(step)

    def before_steps(self, step):
        start, end = self.window
        if step == start:
            self._dumping = self._dumping_step(self.dumps.start(self.train_step))
            if self.dumps.writes:
                self.log(f"tensor dumps: steps {start + 1}-{end} into {self.dumps.dump_root} "
                         f"({self.dumps.mode}, the last {self.dumps.buffer_size} op executions "
                         f"kept)")
        elif step == end:
            self.end(step)
        elif step == start + 1 and self.dumps.active:
            self._timed_from = (step, time.perf_counter())  # after the first step's tracing

    def _dumping_step(self, function):
        """The instrumented step, remembering its batch; None where this worker writes none."""
        if function is None:
            return None

        def step(images, labels):
            function(images, labels)
            self._last_batch = (images, labels)
        return step

    def explain_nonfinite(self):
        """Which op first held NaN or Inf, read from the dump; "" without dumps here."""
        if self._dumping is None:
            return ""
        found = self.dumps.first_nonfinite(*self._last_batch)
        self._dumping = None
        if found is None:
            return (f"; the tensor dumps in {self.dumps.dump_root} hold no op output with NaN "
                    f"or Inf (--dump_mode={self.dumps.mode} records none, or the buffer kept "
                    f"too few op executions: raise --dump_buffer_size)")
        return (f"; first op whose output held NaN or Inf: {found.describe()} (tensor dumps in "
                f"{self.dumps.dump_root})")

    def end(self, step):
        """Writes the dump out (also when the run ends inside the window or fails)."""
        if not self.dumps.active:
            return
        self.dumps.stop()
        self._dumping = None
        self._last_batch = None
        cost = self.record_rate(step)
        if self.dumps.writes:
            self.log(f"tensor dumps: written to {self.dumps.dump_root} (open it with "
                     f"tensorboard --logdir {self.dumps.dump_root}, Debugger V2)"
                     + (f"; cost: {run_format.describe_cost(cost)}" if cost else ""))
