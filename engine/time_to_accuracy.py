"""Time to accuracy (as MLPerf counts it): the run stops after the first evaluation whose top-1
reaches a target, and metrics.jsonl records when: the step, the epoch, the training seconds of
every segment of the run (engine/run_state.py sums them across resumes) and the images seen."""
from engine import run_format
from engine.controller import Hook


class TargetReached(Exception):
    """The run reached its target accuracy; args[0] is the time_to_accuracy record."""


class StopAtTarget(Hook):
    """After each evaluation (`evaluated`): when validation top-1 >= `target`, writes the
    record and raises TargetReached. Every worker sees the same summed top-1, so all stop at
    the same step; the step's checkpoint was written before its evaluation."""

    def __init__(self, *, target, recorder, global_batch, elapsed, any_worker):
        self.target, self.recorder = target, recorder
        self.global_batch, self.elapsed, self.any_worker = global_batch, elapsed, any_worker

    def begin(self, step):
        """A run that reached its target before (a rerun of its command) stops at once: rank 0
        reads the records (the other hosts may not have them) and the workers agree."""
        records = self.recorder.records() if self.recorder.enabled else []
        reached = [r for r in records
                   if r["split"] == run_format.TIME_TO_ACCURACY and r["step"] <= step]
        if self.any_worker(bool(reached)):
            raise TargetReached(reached[0] if reached else None)

    def evaluated(self, step, epoch, metrics):
        if metrics["top1"] < self.target:
            return
        record = {"split": run_format.TIME_TO_ACCURACY, "step": step, "epoch": epoch,
                  "top1": metrics["top1"], "target": self.target,
                  "elapsed_sec": round(self.elapsed(), 3), "images": step * self.global_batch}
        self.recorder.write(record)
        self.recorder.sync()
        raise TargetReached(record)
