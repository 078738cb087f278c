"""What a run tells: metrics.jsonl, TensorBoard scalars, throughput, a live progress line, and
the one place where the loop reads values back from the device."""
import contextlib
import json
import os
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


# The profiler annotations that launch.profile reads: one per train step (TensorBoard's overview
# page finds steps by this name and step_num too), and the wait for the next batch inside it.
STEP_MARKER, INPUT_WAIT_MARKER = "train", "input_wait"


def step_marker(step, *, enabled):
    """A profiler annotation of train step `step` while profiling, else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return tf.profiler.experimental.Trace(STEP_MARKER, step_num=step, _r=1)


def input_wait_marker(*, enabled):
    return (tf.profiler.experimental.Trace(INPUT_WAIT_MARKER) if enabled
            else contextlib.nullcontext())


def window_cost(records, split, last_step):
    """What a profile or tensor-dump window cost, from metrics.jsonl records: the window's
    images/s (its record of `split` ending at `last_step`) against the median of the train
    intervals wholly outside it, leaving out the first interval of the window's run segment (it
    holds tracing). None without that record; outside None without such intervals."""
    window = [r for r in records if r.get("split") == split and r["step"] == last_step]
    if not window:
        return None
    first_step, segment_first = window[-1]["first_step"], window[-1]["segment_first_step"]
    outside, previous = [], 0
    for r in (r for r in records if r.get("split") == "train"):
        start, previous = previous, r["step"]
        if start < segment_first <= r["step"]:
            continue
        if r["step"] < first_step or start >= last_step:
            outside.append(r["images_per_sec"])
    inside = window[-1]["images_per_sec"]
    if not outside:
        return {"window_images_per_sec": inside, "outside_images_per_sec": None,
                "slowdown": None, "outside_intervals": 0}
    median = float(np.median(outside))
    return {"window_images_per_sec": inside, "outside_images_per_sec": median,
            "slowdown": round(1 - inside / median, 4), "outside_intervals": len(outside)}


def describe_cost(cost):
    """A window_cost as a phrase for a log line."""
    if cost["slowdown"] is None:
        return (f"{cost['window_images_per_sec']:.1f} img/s inside the window, no logged "
                f"interval outside it to compare (a smaller --log_steps gives some)")
    change = (f"{cost['slowdown']:.1%} slower" if cost["slowdown"] >= 0
              else f"the window ran {-cost['slowdown']:.1%} faster: the cost is below this "
                   f"run's noise")
    return (f"{cost['window_images_per_sec']:.1f} img/s inside the window against "
            f"{cost['outside_images_per_sec']:.1f} (median) outside it ({change})")


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


class Recorder:
    """<model_dir>/metrics.jsonl (one JSON object per train log interval and per evaluation) and
    TensorBoard events under <model_dir>/train and <model_dir>/validation. Rank 0 only."""

    def __init__(self, model_dir, is_chief):
        self.enabled = is_chief
        if is_chief:
            os.makedirs(model_dir, exist_ok=True)
        self.path = os.path.join(model_dir, "metrics.jsonl")
        self.model_dir = model_dir
        self._writers = {}

    def truncate_after(self, step):
        """Drops records past `step` (left by a run that died after its last checkpoint), so that
        the resumed run neither duplicates nor loses any."""
        if not self.enabled or not os.path.exists(self.path):
            return
        kept = [line for line in self.records() if line["step"] <= step]
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            for record in kept:
                f.write(json.dumps(record) + "\n")
        os.replace(tmp, self.path)

    def records(self):
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    break  # a line cut by a crash: everything after it is suspect
        return out

    def write(self, record):
        """Appends a record. A killed process loses none (the kernel has it); what a crash of
        the machine could lose is made durable by `sync` before each checkpoint, which is all a
        resume needs (records past the checkpoint are dropped anyway)."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def sync(self):
        """fsync of metrics.jsonl: costly on some disks, so once per checkpoint, not per
        record (`python -m launch.benchmark --mode=loop_overhead` shows the loop's cost)."""
        if self.enabled and os.path.exists(self.path):
            with open(self.path, "a") as f:
                os.fsync(f.fileno())

    def scalars(self, split, step, values):
        if not self.enabled:
            return
        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(
                os.path.join(self.model_dir, split))
        with self._writers[split].as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)
        self._writers[split].flush()


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


def format_train(record):
    return (f"step {record['step']} epoch {record['epoch']:.2f}: loss {record['loss']:.4f} "
            f"top1 {record['top1']:.4f} lr {record['lr']:.5f} "
            f"{record['images_per_sec']:.1f} img/s")


def format_eval(record):
    weights = " (EMA weights)" if record["split"].endswith("_ema") else ""
    return (f"validation{weights} at step {record['step']} (epoch {record['epoch']}): "
            f"loss {record['loss']:.4f} top1 {record['top1']:.4f} top5 {record['top5']:.4f} "
            f"over {record['examples']} examples")
