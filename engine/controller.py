"""The training loop as a small controller with hooks (orbit's Controller + actions, big_vision's
`itstime` blocks): run steps up to the next boundary that any hook asks for, then run every hook
that is due there. Each periodic concern (logging, checkpoints, epoch ends, stop requests, the
debugging windows, the progress line) is a Hook that owns its own state and cadence
(engine/hooks/); adding one means adding a hook, not editing the loop.

Steps are counted as done: "at step 10" means after the tenth update. The host reads nothing
from the device between boundaries; at a boundary where a hook is due it first checks that
every step since the last one was finite, then runs the due hooks in their order.
"""
import dataclasses
from typing import Callable, Optional, Sequence, Union

from engine.errors import NonFiniteLoss
from engine.watchdog import NoWatchdog


@dataclasses.dataclass(frozen=True)
class SingleStep:
    """A step that a hook runs on its own (the debugging windows): always the plain one-step
    call, on every worker alike; `marked` puts profiler annotations around it and waits for it
    (so that it holds its own time), `function` replaces it with an instrumented copy, and
    `slow` (that copy is slower) gives the stall watchdog its long allowance."""
    marked: bool = False
    function: Optional[Callable] = None
    slow: bool = False

    @staticmethod
    def combined(asked: Sequence["SingleStep"]) -> Optional["SingleStep"]:
        """One step for what several hooks ask (windows may overlap); None when none asks."""
        if not asked:
            return None
        functions = [one.function for one in asked if one.function is not None]
        return SingleStep(marked=any(one.marked for one in asked),
                          function=functions[0] if functions else None,
                          slow=any(one.slow for one in asked))


class Hook:
    """A concern of the loop. Every method has a do-nothing default; override what you need.

    `rides_along`: due at every boundary that another hook's cadence makes (no cadence of its
    own), e.g. the stop request, which all workers must check at the same steps."""

    rides_along = False

    def begin(self, step: int) -> None:
        """The run segment starts after `step` (restored, broadcast)."""

    def next_boundary(self, step: int) -> Optional[int]:
        """The first step after `step` at which this hook is due, or None."""
        return None

    def single_step(self, step: int) -> Optional[SingleStep]:
        """How the step after `step` runs when this hook needs it run on its own (the debugging
        windows), or None. Asked after before_steps(step). The first such step must be a
        boundary of the hook's (next_boundary), so that no call of several steps runs into
        it."""
        return None

    def before_steps(self, step: int) -> None:
        """Host-side work before the steps after `step` are dispatched."""

    def after_steps(self, step: int) -> None:
        """Host-side work after each call, at boundaries or not; it must not read the device."""

    def due(self, step: int) -> bool:
        return self.next_boundary(step - 1) == step

    def at_boundary(self, step: int) -> None:
        """The hook's work at a boundary where it is due (device reads allowed)."""

    def before_checkpoint(self, step: int) -> None:
        """A checkpoint of `step` is about to be written (by whichever hook writes it)."""

    def evaluated(self, step: int, epoch: int, metrics: dict) -> None:
        """The validation split was evaluated at `step` (an epoch end's evaluation, or the one
        a resumed segment found missing), with these summed metrics."""

    def explain_nonfinite(self) -> str:
        """A clause for the non-finite error's line (what the hook knows of the bad step)."""
        return ""

    def end(self, step: int) -> None:
        """Training ended after `step` (returned, stopped or failed): release what it holds."""


class Controller:
    """Runs `run_steps(step, count, single)` (`single`: a SingleStep when a hook runs the step
    on its own, else None) from a start step to `total_steps`, stopping at the hooks'
    boundaries and running at most `steps_per_call` steps per call (a number, or a function that
    gives the current one: engine/hooks/pace.py); `first_nonfinite_step()` reads the step's
    non-finite record (-1: none)."""

    def __init__(self, *, run_steps: Callable[[int, int, Optional[SingleStep]], None],
                 hooks: Sequence[Hook],
                 total_steps: int, steps_per_call: Union[int, Callable[[], int]],
                 first_nonfinite_step: Callable[[], int],
                 watchdog=None):
        self.run_steps, self.hooks = run_steps, list(hooks)
        self.total_steps, self.steps_per_call = total_steps, steps_per_call
        self.first_nonfinite_step = first_nonfinite_step
        self.watchdog = watchdog or NoWatchdog()

    def train(self, step: int) -> int:
        """Trains from `step` to total_steps; returns the last step reached."""
        try:
            for hook in self.hooks:
                hook.begin(step)
            while step < self.total_steps:
                for hook in self.hooks:
                    hook.before_steps(step)
                single = SingleStep.combined([asked for hook in self.hooks
                                              if (asked := hook.single_step(step)) is not None])
                end = step + 1 if single else self.next_boundary(step)
                self.run_steps(step, end - step, single)
                step = end
                for hook in self.hooks:
                    hook.after_steps(step)
                due = self.due(step)
                if due:
                    self.watchdog.expect(
                        f"the other workers and the device at the step-{step} boundary", step)
                    self.check_finite()
                    for hook in due:
                        hook.at_boundary(step)
        finally:
            for hook in self.hooks:
                hook.end(step)
        return step

    def next_boundary(self, step: int) -> int:
        limit = self.total_steps
        per_call = self.steps_per_call
        boundary = min(limit, step + (per_call() if callable(per_call) else per_call))
        for hook in self.hooks:
            wanted = hook.next_boundary(step)
            if wanted is not None and step < wanted < boundary:
                boundary = wanted
        return boundary

    def due(self, step: int) -> list:
        """The hooks due at `step` (in order), riders included when any other is due."""
        if not any(hook.due(step) for hook in self.hooks if not hook.rides_along):
            return []
        return [hook for hook in self.hooks if hook.rides_along or hook.due(step)]

    def evaluated(self, step: int, epoch: int, metrics: dict) -> None:
        """Tells every hook of an evaluation (EpochEnd calls it), in their order."""
        for hook in self.hooks:
            hook.evaluated(step, epoch, metrics)

    def checkpointing(self, step: int) -> None:
        """Tells every hook that a checkpoint of `step` is about to be written."""
        for hook in self.hooks:
            hook.before_checkpoint(step)

    def check_finite(self) -> None:
        bad = self.first_nonfinite_step()
        if bad >= 0:
            raise NonFiniteLoss(f"loss or gradients became NaN or Inf at step {bad + 1}; "
                                f"stopped without applying it (last good checkpoint kept)"
                                + "".join(hook.explain_nonfinite() for hook in self.hooks))
