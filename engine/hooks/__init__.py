"""The loop's hooks (engine/controller.py's Hook), one concern each:

    TrainLog          train metrics every log_steps and at epoch ends; TensorBoard scalars
    ProgressLine      a live step / loss / img/s / ETA line on a terminal
    PeriodicCheckpoint  a checkpoint every checkpoint_steps
    StopOnSignal      SIGTERM/SIGINT: checkpoint the step reached and stop (all workers agree)
    StepTimer         the step time, measured at each segment's start
    StopChecks        the cadence it sets: stop checks, steps per call
    EpochEnd          BN statistics averaged across workers, precise BN, checkpoint, evaluation
    ProfileWindow     a TF profiler capture of --profile_steps
    DumpWindow        TF debugger tensor dumps of --dump_steps
"""
from engine.hooks.checkpointing import PeriodicCheckpoint, StopOnSignal, StopRequested
from engine.hooks.epoch_end import EpochEnd
from engine.hooks.pace import StepTimer, StopChecks
from engine.hooks.train_log import ProgressLine, TrainLog
from engine.hooks.windows import DumpWindow, ProfileWindow

__all__ = ["TrainLog", "ProgressLine", "PeriodicCheckpoint", "StopOnSignal", "StopRequested",
           "StepTimer", "StopChecks", "EpochEnd", "ProfileWindow", "DumpWindow"]
