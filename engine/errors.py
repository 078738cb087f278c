"""Errors of the engine that a user can act on: the message names what is at fault, and the
command line prints it as one line (launch/errors.py)."""


class EngineError(RuntimeError):
    """Base of the engine's user-facing errors."""


class CheckpointError(EngineError):
    """A checkpoint cannot be written or used; the message names it."""


class HeadMismatch(CheckpointError):
    """A checkpoint that fits a net except for its classifier (another number of classes)."""


class ModelDirLocked(EngineError):
    """Another run holds the model_dir."""


class NonFiniteLoss(EngineError):
    """The loss or the gradients became NaN or Inf; the message names the step."""


class WriteFailed(EngineError):
    """A file of the run could not be written (disk full, read-only, over quota, gone); the
    message names the file and the cause. Whatever was half-written is removed first."""
