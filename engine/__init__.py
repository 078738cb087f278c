"""Training: distributed backend, optimizers, schedules, the train/eval steps and the loop.
Takes plain Python objects; never reads flags."""
from engine import distributed, losses, optimizers, schedules
from engine.checkpoints import CheckpointError, ModelDirLock, ModelDirLocked
from engine.loop import NonFiniteLoss, StopRequested, Trainer, TrainConfig
from engine.step import EvalStep, TrainStep

__all__ = ["distributed", "losses", "optimizers", "schedules", "CheckpointError", "ModelDirLock",
           "ModelDirLocked", "NonFiniteLoss", "StopRequested", "Trainer", "TrainConfig",
           "EvalStep", "TrainStep"]
