"""What happens at an epoch's end: the epoch counter moves on, the workers' BN statistics are
averaged (each moved them with its own batches), precise BN statistics are recomputed when
asked, a checkpoint is written, and the validation split is evaluated (at the epochs that the
evaluator says are due; precise BN only before an evaluation, which is what reads it). Every
hook then hears of the evaluation (Hook.evaluated: keeping the best checkpoint, stopping at a
target accuracy)."""
from typing import Callable

from engine.controller import Hook


class EpochEnd(Hook):
    """`evaluator` an engine.evaluation.Evaluator; `save(step)` writes a checkpoint; `epoch` the
    run's epoch counter (a variable that checkpoints hold); `announce(step, epoch, metrics)`
    tells every hook of an evaluation (Controller.evaluated). At a segment's start it evaluates
    the epoch that a kill between its checkpoint and its evaluation left without one; the
    hooks that act on evaluations come before it, so that they have begun."""

    def __init__(self, *, steps_per_epoch, epoch, evaluator, save,
                 announce: Callable[[int, int, dict], None]):
        self.steps_per_epoch, self.epoch = steps_per_epoch, epoch
        self.evaluator, self.save, self.announce = evaluator, save, announce
        self.last_evaluation = None

    def begin(self, step):
        missing = self.evaluator.evaluate_if_missing(step, self.steps_per_epoch)
        if missing is not None:
            self.announce(step, step // self.steps_per_epoch, missing)

    def next_boundary(self, step):
        return (step // self.steps_per_epoch + 1) * self.steps_per_epoch

    def at_boundary(self, step):
        epoch = step // self.steps_per_epoch
        self.epoch.assign(epoch)
        self.evaluator.average_drifting_statistics()
        evaluate = self.evaluator.due(epoch)
        precise_bn_sec = self.evaluator.recompute_statistics(step) if evaluate else None
        self.save(step)
        if evaluate:
            self.last_evaluation = self.evaluator.evaluate(step, epoch,
                                                           precise_bn_sec=precise_bn_sec)
            self.announce(step, epoch, self.last_evaluation)
