"""Device set-up, before TensorFlow touches a device: Gaudi's module, one GPU per local rank."""
import os

import tensorflow as tf

from launch.errors import CommandError


class DeviceError(CommandError):
    """A device that was asked for is not there."""


def load_habana():
    """--run_on_hpu: registers Gaudi (HPU) devices with TensorFlow."""
    try:
        from habana_frameworks.tensorflow import load_habana_module
    except ImportError:
        raise DeviceError("--run_on_hpu: the Habana TensorFlow module (habana_frameworks."
                          "tensorflow) is not installed; see BUILD.md, section Gaudi") from None
    load_habana_module()


def pin_gpu(local_rank):
    """One GPU per local rank, memory grown on demand (several workers share a host)."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    gpu = gpus[local_rank % len(gpus)]
    tf.config.set_visible_devices(gpu, "GPU")
    tf.config.experimental.set_memory_growth(gpu, True)
    return gpu.name


def horovod_stall_defaults(stall_timeout):
    """Horovod's own stall check warns, and its shutdown ends the job, when workers disagree on
    the tensors to reduce for this long. Unless the user set them, they match --stall_timeout:
    warnings from half of it (at most a minute), shutdown a little after it, so that the
    engine's watchdog, which names the step, speaks first."""
    if stall_timeout:
        os.environ.setdefault("HOROVOD_STALL_CHECK_TIME_SECONDS",
                              str(max(1, min(60, stall_timeout // 2))))
        os.environ.setdefault("HOROVOD_STALL_SHUTDOWN_TIME_SECONDS", str(stall_timeout + 30))


def horovod_timeline(path):
    """Horovod reads HOROVOD_TIMELINE at init: set it before the backend starts."""
    if path:
        os.environ["HOROVOD_TIMELINE"] = os.path.abspath(path)
