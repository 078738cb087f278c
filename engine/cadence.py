"""When is it time? One answer for every periodic event of the loop (big_vision's `itstime`).

Steps are counted as done: "at step 10" means after the tenth update. An event every `every`
steps falls on the multiples of `every` (None or 0: never) and, if `last` is given, also on that
step (an epoch's end).
"""
from typing import Iterable, Optional


def itstime(step: int, every: Optional[int], *, last: Optional[int] = None) -> bool:
    """True if the event with period `every` is due after `step` steps."""
    if not every:
        return False
    return step % every == 0 or step == last


def next_boundary(step: int, *, limit: int, every: Iterable[Optional[int]] = (),
                  at: Iterable[int] = ()) -> int:
    """The first step after `step`, and at most `limit`, at which some event falls: a multiple
    of one of the periods `every` (None or 0 are ignored) or one of the steps `at`."""
    boundary = limit
    for period in every:
        if period:
            boundary = min(boundary, (step // period + 1) * period)
    for point in at:
        if point > step:
            boundary = min(boundary, point)
    return boundary
