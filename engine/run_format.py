"""The run's formats, in one place: what the engine writes and launch/ reads back by name.

- metrics.jsonl in the model_dir: one JSON object per line, each with a `split` (SPLITS) and the
  `step` it was written at (steps counted as done):
    train:           loss, top1, top5 (means over the log interval), lr, images_per_sec,
                     input_wait_sec, compute_sec, peak_host_memory_mb[, peak_device_memory_mb]
    validation[_ema]: loss, top1, top5, examples, seconds, elapsed_sec[, precise_bn_sec]
    profile / tensor_dumps: first_step, segment_first_step, images_per_sec (a debugging window)
    time_to_accuracy: epoch, top1, target, elapsed_sec (training time of every segment),
                     images (seen by then): the first evaluation that reached --target_accuracy
  `Recorder` writes it (rank 0) and `read_records` reads it.
- TensorBoard scalars under <model_dir>/<split>.
- Profiler captures under <model_dir>/train/plugins/profile/<time>/ (`profiler_logdir`, where
  TensorBoard's Profile tab finds them).
- The profiler's annotations (STEP_MARKER per train step with its step_num, INPUT_WAIT_MARKER
  inside it) and the name scopes of a train step's phases (PHASES).
"""
import contextlib
import json
import os

import numpy as np
import tensorflow as tf

from engine import files
from engine.errors import WriteFailed

METRICS_FILE = "metrics.jsonl"
TRAIN, VALIDATION, VALIDATION_EMA = "train", "validation", "validation_ema"
PROFILE, TENSOR_DUMPS = "profile", "tensor_dumps"
TIME_TO_ACCURACY = "time_to_accuracy"
SPLITS = (TRAIN, VALIDATION, VALIDATION_EMA, PROFILE, TENSOR_DUMPS, TIME_TO_ACCURACY)



def profiler_logdir(model_dir):
    """What the profiler is started with; it writes plugins/profile/<time>/ below it."""
    return os.path.join(model_dir, TRAIN)


def capture_root(model_dir):
    return os.path.join(profiler_logdir(model_dir), "plugins", "profile")


# The name scopes that split a train step's ops into its phases; launch.profile reads a profile's
# op names by them (TF names the gradient ops "gradient_tape/<forward op>", which it reads as
# backward).
FORWARD, BACKWARD, ALLREDUCE, APPLY = "forward", "backward", "allreduce", "apply"
PHASES = (FORWARD, BACKWARD, ALLREDUCE, APPLY)

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


class Recorder:
    """<model_dir>/metrics.jsonl (one JSON object per train log interval and per evaluation) and
    TensorBoard events under <model_dir>/train and <model_dir>/validation. Rank 0 only."""

    def __init__(self, model_dir, is_chief):
        self.enabled = is_chief
        if is_chief:
            os.makedirs(model_dir, exist_ok=True)
        self.path = os.path.join(model_dir, METRICS_FILE)
        self.model_dir = model_dir
        self._writers = {}

    def truncate_after(self, step):
        """Drops records past `step` (left by a run that died after its last checkpoint), so that
        the resumed run neither duplicates nor loses any."""
        if not self.enabled or not os.path.exists(self.path):
            return
        kept = [line for line in self.records() if line["step"] <= step]
        files.write_whole(self.path, "".join(json.dumps(record) + "\n" for record in kept))

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
        files.append_whole(self.path, json.dumps(record) + "\n")

    def sync(self):
        """fsync of metrics.jsonl: costly on some disks, so once per checkpoint, not per
        record (`python -m launch.benchmark --mode=loop_overhead` shows the loop's cost)."""
        if self.enabled and os.path.exists(self.path):
            try:
                with open(self.path, "a") as f:
                    os.fsync(f.fileno())
            except OSError as e:
                raise files.failed(self.path, e) from None

    def scalars(self, split, step, values):
        if not self.enabled:
            return
        directory = os.path.join(self.model_dir, split)
        try:
            if split not in self._writers:
                self._writers[split] = tf.summary.create_file_writer(directory)
            with self._writers[split].as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(name, value)
            self._writers[split].flush()
        except (tf.errors.OpError, OSError) as e:
            raise WriteFailed(f"could not write TensorBoard events to {directory}: "
                              f"{files.cause(e)}") from None


def read_records(model_dir):
    """The records of <model_dir>/metrics.jsonl, up to a line cut by a crash ([] if none)."""
    return Recorder(model_dir, is_chief=False).records()


def window_record(records, split, last_step):
    """The record of the `split` window (PROFILE or TENSOR_DUMPS) that ended at `last_step`, or
    None."""
    found = [r for r in records if r.get("split") == split and r["step"] == last_step]
    return found[-1] if found else None


def train_record(*, step, epoch, metrics, lr, rates, host_memory_mb, device_memory_mb):
    record = {"split": TRAIN, "step": step, "epoch": epoch, "loss": metrics["loss"],
              "top1": metrics["top1"], "top5": metrics["top5"], "lr": lr, **rates,
              "peak_host_memory_mb": host_memory_mb}
    if "grad_norm" in metrics:
        record["grad_norm"] = metrics["grad_norm"]
    if device_memory_mb is not None:
        record["peak_device_memory_mb"] = device_memory_mb
    return record


def eval_record(*, split, step, epoch, metrics, seconds, elapsed_sec, precise_bn_sec):
    record = {"split": split, "step": step, "epoch": epoch, **metrics,
              "seconds": round(seconds, 3), "elapsed_sec": round(elapsed_sec, 3)}
    if precise_bn_sec is not None:
        record["precise_bn_sec"] = precise_bn_sec
    return record


def window_rate_record(*, split, step, first_step, segment_first_step, images_per_sec):
    return {"split": split, "step": step, "first_step": first_step,
            "segment_first_step": segment_first_step, "images_per_sec": images_per_sec}


def window_cost(records, split, last_step):
    """What a profile or tensor-dump window cost, from metrics.jsonl records: the window's
    images/s (its record of `split` ending at `last_step`) against the median of the train
    intervals wholly outside it, leaving out the first interval of the window's run segment (it
    holds tracing). None without that record; outside None without such intervals."""
    window = window_record(records, split, last_step)
    if window is None:
        return None
    first_step, segment_first = window["first_step"], window["segment_first_step"]
    outside, previous = [], 0
    for r in (r for r in records if r.get("split") == TRAIN):
        start, previous = previous, r["step"]
        if start < segment_first <= r["step"]:
            continue
        if r["step"] < first_step or start >= last_step:
            outside.append(r["images_per_sec"])
    inside = window["images_per_sec"]
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


def format_train(record):
    return (f"step {record['step']} epoch {record['epoch']:.2f}: loss {record['loss']:.4f} "
            f"top1 {record['top1']:.4f} lr {record['lr']:.5f} "
            f"{record['images_per_sec']:.1f} img/s")


def format_eval(record):
    weights = " (EMA weights)" if record["split"] == VALIDATION_EMA else ""
    return (f"validation{weights} at step {record['step']} (epoch {record['epoch']}): "
            f"loss {record['loss']:.4f} top1 {record['top1']:.4f} top5 {record['top5']:.4f} "
            f"over {record['examples']} examples")
