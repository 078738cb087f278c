"""The run's best checkpoint by one validation metric, kept apart from the rolling checkpoints
(<model_dir>/best/), and what a later command needs to find it (`read`).

best/best.json names the checkpoint and says what it scored; it is replaced (atomically) only
after the new checkpoint is complete, and the previous best's files are removed only after that,
so a kill at any moment leaves a best.json that names a whole checkpoint.
"""
import json
import os

import tensorflow as tf

from engine import files, run_format
from engine.controller import Hook
from engine.errors import WriteFailed

# --keep_best's metrics: (the key of Evaluator.evaluate's result, whether larger is better).
METRICS = {"top1": ("top1", True), "top5": ("top5", True), "loss": ("loss", False),
           "top1_ema": ("ema_top1", True), "top5_ema": ("ema_top5", True),
           "loss_ema": ("ema_loss", False)}


def _recorded(metric):
    """(metrics.jsonl split, field) of a metric."""
    field = metric.removesuffix("_ema")
    return (run_format.VALIDATION_EMA if metric.endswith("_ema") else run_format.VALIDATION,
            field)
DIRECTORY = "best"
RECORD = "best.json"


def read(model_dir):
    """The best checkpoint's record ({metric, value, step, epoch, checkpoint: its path}), or
    None when the run kept none."""
    path = os.path.join(model_dir, DIRECTORY, RECORD)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        record = json.load(f)
    record["checkpoint"] = os.path.join(model_dir, DIRECTORY, record["checkpoint"])
    return record


def uses_weight_average(metric):
    return metric.endswith("_ema")


class BestCheckpoint(Hook):
    """Keeps, in <model_dir>/best/, the checkpoint (of `checkpoint`, a tf.train.Checkpoint of
    the run's state) whose evaluation scored best on `metric` (a key of METRICS). Rank 0
    writes; every rank keeps the same best value, from the same summed metrics."""

    def __init__(self, model_dir, *, metric, checkpoint, recorder, log=print):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of "
                             f"{', '.join(METRICS)}")
        self.metric, self.checkpoint, self.recorder, self.log = metric, checkpoint, recorder, log
        self.is_chief = recorder.enabled
        self.key, self.larger_is_better = METRICS[metric]
        self.directory = os.path.join(model_dir, DIRECTORY)
        self.best = None  # {metric, value, step, epoch, checkpoint}

    def begin(self, step):
        """Takes up the best that model_dir holds (from earlier segments of the run), unless it
        is of another metric or of a step past `step` (a run resumed from before it). The state
        just restored is that of step `step`: if its evaluation is on record and beats the best
        (a run killed between that evaluation and keeping it), it is kept now."""
        kept = read(os.path.dirname(self.directory))
        if kept is not None and kept["metric"] != self.metric:
            self.log(f"{self.directory} holds the best by {kept['metric']}; this run keeps the "
                     f"best by {self.metric}: it is replaced at the next evaluation")
        elif kept is not None and kept["step"] > step:
            self.log(f"{self.directory} holds the best of step {kept['step']}, past this run's "
                     f"step {step}: it is replaced at the next evaluation")
        elif kept is not None:
            self.best = kept
        split, field = _recorded(self.metric)
        evaluated = [r for r in self.recorder.records()
                     if r["split"] == split and r["step"] == step]
        if evaluated and (self.best is None or self.best["step"] != step):
            self.evaluated(step, evaluated[-1]["epoch"], {self.key: evaluated[-1][field]})

    def evaluated(self, step, epoch, metrics):
        """Keeps this evaluation's checkpoint when it beats the best so far."""
        if self.key not in metrics:
            raise ValueError(f"--keep_best={self.metric}: evaluation gives no {self.key} "
                             f"(the _ema metrics need --ema_decay)")
        value = metrics[self.key]
        if self.best is not None and not self._better(value, self.best["value"]):
            return
        name = f"ckpt-{step}"
        record = {"metric": self.metric, "value": value, "step": step, "epoch": epoch,
                  "checkpoint": name}
        if self.is_chief:
            self._write(name, record)
        self.best = dict(record, checkpoint=os.path.join(self.directory, name))
        self.log(f"best {self.metric} so far ({value:.4f}): {self.best['checkpoint']}")

    def _better(self, value, than):
        return value > than if self.larger_is_better else value < than

    def _write(self, name, record):
        os.makedirs(self.directory, exist_ok=True)
        # write() leaves out the save counter until something creates it: a best kept before
        # the run's first rolling checkpoint of a segment (begin(), after a kill between an
        # evaluation and keeping its checkpoint) would hold one object fewer than every other
        # checkpoint of the run. Created here, every best checkpoint is of the same kind.
        self.checkpoint.save_counter  # the property creates it
        prefix = os.path.join(self.directory, name)
        try:
            self.checkpoint.write(prefix)
        except (tf.errors.OpError, OSError) as e:
            files.remove_partial_checkpoint(prefix)  # the previous best and its record stay
            raise WriteFailed(f"could not write the best checkpoint to {self.directory}: "
                              f"{files.cause(e)}") from None
        try:
            files.write_whole(os.path.join(self.directory, RECORD), json.dumps(record),
                              durable=True)
        except WriteFailed:
            files.remove_partial_checkpoint(prefix)
            raise
        for entry in os.listdir(self.directory):  # earlier bests, and any a kill left behind
            if entry.startswith("ckpt-") and entry.split(".")[0] != name:
                os.remove(os.path.join(self.directory, entry))
