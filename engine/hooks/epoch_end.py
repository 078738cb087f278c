"""What happens at an epoch's end: the epoch counter moves on, the workers' BN statistics are
averaged (each moved them with its own batches), precise BN statistics are recomputed when
asked, a checkpoint is written, and the validation split is evaluated (at the epochs that the
evaluator says are due; precise BN only before an evaluation, which is what reads it); then
what follows an evaluation (keeping the best checkpoint, stopping at a target accuracy)."""
from engine.controller import Hook


class EpochEnd(Hook):
    """`evaluator` an engine.evaluation.Evaluator; `save(step)` writes a checkpoint; `epoch` the
    run's epoch counter (a variable that checkpoints hold); `after_evaluation`: objects whose
    `evaluated(step, epoch, metrics)` runs after each evaluation, in order."""

    def __init__(self, *, steps_per_epoch, epoch, evaluator, save, after_evaluation=()):
        self.steps_per_epoch, self.epoch = steps_per_epoch, epoch
        self.evaluator, self.save = evaluator, save
        self.after_evaluation = list(after_evaluation)
        self.last_evaluation = None

    def next_boundary(self, step):
        return (step // self.steps_per_epoch + 1) * self.steps_per_epoch

    def at_boundary(self, step):
        epoch = step // self.steps_per_epoch
        self.epoch.assign(epoch)
        self.evaluator.average_drifting_statistics()
        evaluate = self.evaluator.due(epoch)
        precise_bn_sec = self.evaluator.recompute_statistics(step, epoch) if evaluate else None
        self.save(step)
        if evaluate:
            self.last_evaluation = self.evaluator.evaluate(step, epoch,
                                                           precise_bn_sec=precise_bn_sec)
            for follower in self.after_evaluation:
                follower.evaluated(step, epoch, self.last_evaluation)
