"""Runs launch.train with its train batches recorded: for every micro-batch that the input
module deals, a line "SEED STEP SLOT DIGEST" (the stream's seed: the run's, or precise BN's; the
step it is for, 1-based; the slot; a digest of its images and targets) in
$DATA_PROBE_DIR/<pid>.txt. Batches read ahead but never trained on are
recorded too (their step says which), so the lines show what each step and slot was dealt, by
any worker, however often (tests/launch/test_elastic.py). $DATA_PROBE_SECONDS (if set) delays
every batch that long, so that a run lasts long enough for a test to change its workers
mid-run without changing what it computes."""
import launch.quiet_start  # noqa: F401

# isort: split
import hashlib
import os
import time

import tensorflow as tf

from input.modules import worker_slots
from launch import build_run, train


class Probed:
    """The input module `inner`, its train batches recorded."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def train_dataset(self, batch_size, *, worker=0, workers=1, seed=0,
                      start_example=0, micro_batches=1):
        batches = self.inner.train_dataset(batch_size, worker=worker,
                                           workers=workers, seed=seed,
                                           start_example=start_example,
                                           micro_batches=micro_batches)
        slots = worker_slots(worker, workers, micro_batches)
        micro, steps_done = batch_size // micro_batches, start_example // batch_size
        path = os.path.join(os.environ["DATA_PROBE_DIR"], f"{os.getpid()}.txt")
        delay = float(os.environ.get("DATA_PROBE_SECONDS", "0"))

        def record(index, images, targets):
            lines = []
            for k, slot in enumerate(slots):
                part = slice(k * micro, (k + 1) * micro)
                digest = hashlib.sha1(images[part].numpy().tobytes()
                                      + targets[part].numpy().tobytes()).hexdigest()
                lines.append(f"{seed} {steps_done + int(index) + 1} {slot} {digest}\n")
            with open(path, "a") as f:
                f.writelines(lines)
            time.sleep(delay)
            return index

        def tap(index, batch):
            images, targets = batch
            done = tf.py_function(record, [index, images, targets], tf.int64)
            with tf.control_dependencies([done]):
                return tf.identity(images), targets
        return batches.enumerate().map(tap)


if __name__ == "__main__":
    real_open_input = build_run.open_input
    build_run.open_input = lambda planned, **options: Probed(real_open_input(planned, **options))
    train.run()
