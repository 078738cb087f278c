"""Training: distributed backend, optimizers, schedules, the train/eval steps, and the loop (a
controller with hooks).
Takes plain Python objects; never reads flags."""
from engine import best, cadence, distributed, losses, optimizers, schedules
from engine.checkpoints import ModelDirLock, recorded_slots, restore_net
from engine.controller import Controller, Hook, SingleStep
from engine.errors import (
    CheckpointError,
    EngineError,
    HeadMismatch,
    ModelDirLocked,
    NonFiniteLoss,
    WriteFailed,
)
from engine.hooks import StopRequested
from engine.model import Model
from engine.step import EvalStep, TrainStep
from engine.time_to_accuracy import TargetReached
from engine.trainer import TrainConfig, Trainer

__all__ = ["best", "cadence", "distributed", "losses", "optimizers", "schedules", "ModelDirLock",
           "recorded_slots", "restore_net", "CheckpointError", "EngineError", "HeadMismatch",
           "ModelDirLocked", "NonFiniteLoss", "WriteFailed", "StopRequested", "TargetReached",
           "Trainer", "TrainConfig", "EvalStep", "TrainStep", "Controller", "Hook", "SingleStep",
           "Model"]
