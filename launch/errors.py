"""The errors that the entry points print as one line (`<command>: <message>`, exit code 1).

Each folder has one base class for its user-facing errors; input/ and nets/ import nothing of
the project beyond their own folder, so the bases cannot share an ancestor, and this tuple is
the one place that lists them.
"""
import sys

from engine.errors import EngineError
from input.records import InputError
from nets.keras_weights import WeightsMismatch


class CommandError(Exception):
    """Base of launch's own errors: a bad command line, device or run directory."""


ONE_LINE_ERRORS = (CommandError, EngineError, InputError, WeightsMismatch)


def report(command: str, error, exit_code: int = 1) -> int:
    """Prints `command: error` (an exception or a line) on stderr; returns `exit_code`."""
    sys.stderr.write(f"{command}: {error}\n")
    return exit_code
