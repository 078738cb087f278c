"""The loop's two debugging windows over a range of steps: a TF profiler capture
(--profile_steps) and TF debugger tensor dumps (--dump_steps, engine/tensor_dumps.py).

Inside either window steps run one per call (the step before a window too, so that tracing the
one-step call stays outside it). In the profile window each step is marked for the profile and
the host waits for it, so that each holds its own time; in the dump window each step is checked,
so that a bad step stops the run at once with its ops the last ones in the dump's buffer, and
the step runs through the freshly traced, instrumented copy of the train step. Each window's
images/s goes to metrics.jsonl (`"split": "profile"` or `"tensor_dumps"`): its cost, which
launch.profile and the dump's closing log line state against the intervals outside it.
"""
import time

import tensorflow as tf

from engine import observe


class DebugWindows:
    """`profile_steps` (START, END) or None; `dumps` an engine.tensor_dumps.TensorDumps or None.
    Every worker has both; only the chief profiles, and only dumps that `write` dump."""

    def __init__(self, *, model_dir, batch_size, profile_steps, dumps, is_chief, recorder,
                 log):
        self.model_dir, self.batch_size = model_dir, batch_size
        self.profile_steps, self.dumps = profile_steps, dumps
        self.is_chief, self.recorder, self.log = is_chief, recorder, log
        self.profiling = False
        self.segment_first_step = 0  # this run segment's first step (set by the loop)
        self._profile_start = self._dump_start = None
        self._dump_function = self._dump_batch = None

    def _windows(self):
        return [w for w in (self.profile_steps, self.dumps.window if self.dumps else None) if w]

    def edges(self):
        """The steps at which a window opens or closes: event boundaries of the loop."""
        return tuple(edge for window in self._windows() for edge in window)

    def steps_per_call(self, step, default):
        for window in self._windows():
            if window[0] - 1 <= step < window[1]:
                return 1
        return default

    def checks_each_step(self):
        return self.dumps is not None and self.dumps.active

    def open_or_close(self, step, train_step):
        """Before running step + 1: opens or closes the windows that start or end at `step`."""
        window = self.profile_steps
        if window and self.is_chief:
            if step == window[0]:
                tf.profiler.experimental.start(f"{self.model_dir}/train")
                self.profiling = True
                self._profile_start = (step, time.perf_counter())
                self.log(f"profiler: capturing steps {window[0] + 1}-{window[1]}, one step per "
                         f"call; read it with python -m launch.profile {self.model_dir}")
            elif step == window[1]:
                self.stop_profiler(step)
        if self.dumps is None:
            return
        window = self.dumps.window
        if step == window[0]:
            self._dump_function = self.dumps.start(train_step)
            self._dump_start = None  # timed from the end of the first step (its tracing)
            if self.dumps.writes:
                self.log(f"tensor dumps: steps {window[0] + 1}-{window[1]} into "
                         f"{self.dumps.dump_root} ({self.dumps.mode}, the last "
                         f"{self.dumps.buffer_size} op executions kept)")
        elif step == window[1]:
            self.stop_dumps(step)
        elif step == window[0] + 1 and self.dumps.active:
            self._dump_start = (step, time.perf_counter())

    def run_step(self, train_step, images, labels):
        """Runs one step: through the instrumented copy inside a dump window."""
        if self._dump_function is not None:
            self._dump_function(images, labels)
            self._dump_batch = (images, labels)
        else:
            train_step(images, labels)
        if self.profiling:  # so that each marked step holds its own device time
            observe.to_host([train_step.nonfinite_step])

    def dumping_here(self):
        """Whether steps run through the instrumented copy (slower; its first call traces)."""
        return self._dump_function is not None

    def first_nonfinite_op(self):
        """With tensor dumps of the bad step: which op first held NaN or Inf (a clause for the
        loop's error line), read from the dump; "" without dumps on this worker."""
        if self._dump_function is None:
            return ""
        found = self.dumps.first_nonfinite(*self._dump_batch)
        self._dump_function = None
        if found is None:
            return (f"; the tensor dumps in {self.dumps.dump_root} hold no op output with NaN "
                    f"or Inf (--dump_mode={self.dumps.mode} records none, or the buffer kept "
                    f"too few op executions: raise --dump_buffer_size)")
        return (f"; first op whose output held NaN or Inf: {found.describe()} (tensor dumps in "
                f"{self.dumps.dump_root})")

    def stop_profiler(self, step):
        """Ends the capture and records the window's rate and the run segment's first step
        (which lets launch.profile number the Horovod timeline's steps)."""
        if not self.profiling:
            return
        tf.profiler.experimental.stop()
        self.profiling = False
        self._record("profile", self._profile_start, step)
        self.log(f"profiler: trace written under {self.model_dir}/train/plugins/profile")

    def stop_dumps(self, step=None):
        """Writes the dump out (also when the run ends inside the window or fails)."""
        if self.dumps is None or not self.dumps.active:
            return
        self.dumps.stop()
        self._dump_function = self._dump_batch = None
        cost = None
        if step is not None and self._dump_start:
            cost = self._record("tensor_dumps", self._dump_start, step)
        if self.dumps.writes:
            self.log(f"tensor dumps: written to {self.dumps.dump_root} (open it with "
                     f"tensorboard --logdir {self.dumps.dump_root}, Debugger V2)"
                     + (f"; cost: {observe.describe_cost(cost)}" if cost else ""))

    def _record(self, split, started, step):
        """A metrics.jsonl record of a window (its steps and images/s); its window_cost."""
        first, start = started
        if step <= first:
            return None
        rate = round((step - first) * self.batch_size / max(time.perf_counter() - start, 1e-9),
                     2)
        self.recorder.write({"split": split, "step": step, "first_step": first + 1,
                             "segment_first_step": self.segment_first_step + 1,
                             "images_per_sec": rate})
        return observe.window_cost(self.recorder.records(), split, step)
