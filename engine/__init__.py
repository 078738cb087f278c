"""Training: distributed backend, optimizers, schedules, the train/eval steps and the loop.
Takes plain Python objects; never reads flags."""
from engine import cadence, distributed, losses, optimizers, schedules
from engine.checkpoints import ModelDirLock, restore_net
from engine.errors import CheckpointError, EngineError, HeadMismatch, ModelDirLocked, NonFiniteLoss
from engine.loop import StopRequested, TrainConfig, Trainer
from engine.step import EvalStep, TrainStep

__all__ = ["cadence", "distributed", "losses", "optimizers", "schedules", "ModelDirLock",
           "restore_net", "CheckpointError", "EngineError", "HeadMismatch", "ModelDirLocked",
           "NonFiniteLoss", "StopRequested", "Trainer", "TrainConfig", "EvalStep", "TrainStep"]
