"""A quiet TensorFlow start for every entry point (launch/__init__.py calls `quiet_tensorflow`
before any module of the entry points imports TensorFlow).

TensorFlow's C++ INFO lines are hidden by TF_CPP_MIN_LOG_LEVEL=1, which keeps warnings and
errors. That variable does not reach what TF 2.2x's libraries print while they load: several
copies of absl logging, used before anything could call absl::InitializeLog, each print "All log
messages before absl::InitializeLog()...", "oneDNN custom operations are on..." and "Could not
find cuda drivers..."; and the first device listing prints "failed call to cuInit" on a machine
without an NVIDIA driver. No environment variable or API reaches them (each library has its own
absl state, set at load time), so this module sets stderr aside while TensorFlow loads and lists
its devices, then passes on every line except those. TF_CPP_MIN_LOG_LEVEL=0 shows everything.
TensorFlow's warnings about checkpoint values left unrestored are dropped too (UNRESTORED).
"""
import contextlib
import logging
import os
import sys
import tempfile

NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "TF-TRT Warning: Could not find TensorRT",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
)


def is_noise(line):
    return any(text in line for text in NOISE)


@contextlib.contextmanager
def stderr_set_aside():
    """Sends what anything in the process (C++ included) writes to fd 2 into a temporary file
    for the duration of the block; yields a list that then holds that text."""
    logged = []
    sys.stderr.flush()
    with tempfile.TemporaryFile() as aside:
        saved = os.dup(2)
        os.dup2(aside.fileno(), 2)
        try:
            yield logged
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            aside.seek(0)
            logged.append(aside.read().decode(errors="replace"))


@contextlib.contextmanager
def noise_dropped_from_stderr():
    """What is written to fd 2 inside the block goes on afterwards, less the NOISE lines."""
    logged = []
    try:
        with stderr_set_aside() as logged:
            yield
    finally:
        for line in "".join(logged).splitlines(keepends=True):
            if not is_noise(line):
                sys.stderr.write(line)
        sys.stderr.flush()


# TensorFlow's Python warnings when a checkpoint read leaves values unrestored: a line per value
# (dozens), logged whenever the read's leftovers are garbage-collected, which may be long after
# the read and after the command's one-line error. The engine says itself what must fit and what
# did not (engine/checkpoints.py), and reading part of a file (the net without the optimizer) is
# what it means to do.
UNRESTORED = (
    "is being deleted with unrestored values",
    "Value in checkpoint could not be found in the restored object",
    "An attribute in the restored object could not be found in the checkpoint",
)


class _UnrestoredValuesDropped(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        return not any(text in message for text in UNRESTORED)


def quiet_tensorflow():
    """Imports TensorFlow and lists its devices without the start-up noise (once), and drops
    its warnings about unrestored checkpoint values."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    tf_logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _UnrestoredValuesDropped) for f in tf_logger.filters):
        tf_logger.addFilter(_UnrestoredValuesDropped())
    if "tensorflow" in sys.modules:
        return
    with noise_dropped_from_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices()
