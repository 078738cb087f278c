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
"""
import contextlib
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


def quiet_tensorflow():
    """Imports TensorFlow and lists its devices without the start-up noise (once)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules or os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0":
        return
    with noise_dropped_from_stderr():
        import tensorflow as tf
        tf.config.list_physical_devices()
