"""The slot rule: a run's global batch is S fixed micro-batch slots, and W workers run S / W of
them each per step, so the run computes the same on any W that divides S. This module is the one
place that deals S and refuses what does not fit, with one wording per refusal: the flag
validators, the start, the resume and elastic training's re-entry all call it.
"""
from typing import Optional

from engine.errors import EngineError


class SlotError(EngineError):
    """A worker count, batch or checkpoint that does not fit the run's slots."""


def deal(*, batch_size: int, workers: int, micro_batch_size: Optional[int] = None,
         micro_batches: int = 1, micro_batches_given: bool = False,
         recorded: Optional[int] = None, allow_redeal: bool = False) -> int:
    """The run's slot count S: batch_size / micro_batch_size when that is given, else the count
    its checkpoints recorded (`recorded`), else workers x micro_batches (a fresh run). Refused
    when `workers` does not divide S (unless `allow_redeal`, which deals S anew as workers x
    micro_batches), when micro_batch_size contradicts the recorded S, or when micro_batches was
    given (`micro_batches_given`) and is not S / workers."""
    given = batch_size // micro_batch_size if micro_batch_size else None
    slots = given or recorded or workers * micro_batches
    if recorded and slots != recorded and not allow_redeal:
        raise SlotError(
            f"--micro_batch_size={micro_batch_size} makes {slots} micro-batch slots, but the "
            f"run being resumed has {recorded} (micro-batch {batch_size // recorded}): drop "
            f"the flag to continue it, or use another --model_dir")
    if slots % workers or batch_size % slots:
        if given or (recorded and not allow_redeal):
            raise SlotError(not_divided(workers, slots=slots, batch_size=batch_size,
                                        redeal_hint=not given))
        slots = workers * micro_batches
        if batch_size % slots:
            raise SlotError(f"--batch_size must be divisible by workers x --micro_batches: "
                            f"{batch_size} is not, on {workers} worker{'s' * (workers > 1)} x "
                            f"{micro_batches}")
    if given and micro_batches_given and micro_batches != slots // workers:
        raise SlotError(
            f"--micro_batches={micro_batches} contradicts --micro_batch_size="
            f"{micro_batch_size}: {slots} slots on {workers} workers are {slots // workers} "
            f"micro-batches each; drop --micro_batches")
    return slots


def not_divided(workers: int, *, slots: int, batch_size: int, redeal_hint: bool = True) -> str:
    """The refusal of a worker count that does not divide the run's slots."""
    counts = [d for d in range(1, slots + 1) if slots % d == 0]
    return (f"{workers} workers do not divide this run's {slots} micro-batch slots "
            f"(--batch_size={batch_size} in micro-batches of {batch_size // slots}): run it on "
            f"a worker count that divides {slots} ({', '.join(map(str, counts))})"
            + (", or pass --allow_redeal to deal new slots" if redeal_hint else ""))


def check_checkpoint(path: str, *, written: int, slots: int, workers: int,
                     allow_redeal: bool) -> None:
    """Refuses a checkpoint (`path`) of `written` slots for a command that makes `slots`."""
    if written != slots and not allow_redeal:
        raise SlotError(
            f"{path} is of a run of {written} micro-batch slots; this command makes {slots} "
            f"({workers} workers x {slots // workers} micro-batches): give it the run's "
            f"--micro_batch_size, or --allow_redeal to deal new slots")
