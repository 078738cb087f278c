"""What the machine under the run offers: native bf16, NCHW convolutions on the CPU, and each
worker's share of the host's cores. Asked once at start (launch.train), so that a run on a CPU
that emulates bf16 says so, `--dtype=auto` picks what is fast, and workers sharing a host do
not each size their thread pools to every core.
"""
import dataclasses
import os
import statistics
import time
from typing import Optional

from engine import distributed
from launch import onednn

_THREAD_VARIABLES = {"intra_op": "TF_NUM_INTRAOP_THREADS", "inter_op": "TF_NUM_INTEROP_THREADS"}


def cpu_name() -> str:
    return onednn.cpuinfo("model name") or "CPU"


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN. It turns oneDNN on by default only
    on CPUs with AVX512_VNNI, AVX512_BF16 or AMX (TF_ENABLE_ONEDNN_OPTS overrides); without it
    the CPU has no NCHW convolution and bf16 runs through Eigen's emulation."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # TF moved it: ask a convolution instead
        return _cpu_runs_nchw_conv()


def _cpu_runs_nchw_conv() -> bool:
    import tensorflow as tf
    try:
        with tf.device("/CPU:0"):
            tf.nn.conv2d(tf.zeros([1, 1, 2, 2]), tf.zeros([1, 1, 1, 1]), 1, "VALID",
                         data_format="NCHW")
        return True
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False


def has_gpu() -> bool:
    import tensorflow as tf
    return bool(tf.config.list_physical_devices("GPU"))


def nchw_problem() -> Optional[str]:
    """Why NCHW cannot run here (a clause), or None where it can (a GPU, or oneDNN's CPU
    kernels)."""
    if has_gpu() or onednn_enabled():
        return None
    return ("TensorFlow has no NCHW convolution on this CPU (oneDNN is off: TensorFlow's default "
            "on CPUs without AVX512_VNNI, AVX512_BF16 or AMX, or the start-up probe found it "
            "slower here; TF_ENABLE_ONEDNN_OPTS=1 turns it on)")


@dataclasses.dataclass(frozen=True)
class Bf16Support:
    native: bool
    device: str    # e.g. "CPU (Intel(R) Xeon(R) CPU @ 2.50GHz)"
    missing: str   # what the device lacks for native bf16 ("" when native)


def bf16_support(*, hpu: bool = False) -> Bf16Support:
    """Does the device this process trains on compute bf16 natively? Gaudi: yes. GPU: compute
    capability 8.0 (Ampere) or later. CPU: AVX512_BF16 or AMX-BF16, with oneDNN on."""
    if hpu:
        return Bf16Support(True, "HPU (Gaudi)", "")
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        name = details.get("device_name", "GPU")
        capability = details.get("compute_capability") or (0, 0)
        if tuple(capability) >= (8, 0):
            return Bf16Support(True, f"GPU ({name})", "")
        return Bf16Support(False, f"GPU ({name})", f"compute capability "
                           f"{'.'.join(map(str, capability))}, below 8.0")
    device = f"CPU ({cpu_name()})"
    if not onednn.native_bf16_flags():
        return Bf16Support(False, device, "no AVX512_BF16 or AMX-BF16")
    if not onednn_enabled():
        return Bf16Support(False, device, "oneDNN turned off (TF_ENABLE_ONEDNN_OPTS=0)")
    return Bf16Support(True, device, "")


def bf16_slowdown(*, repeats: int = 3) -> float:
    """bf16 time over fp32 time of one 3x3 convolution (forward and both gradients, a dense
    layer's size at 32 px) measured here: how much an emulated bf16 costs on this device."""
    import tensorflow as tf

    def timed(dtype):
        images = tf.random.stateless_normal([8, 32, 32, 128], seed=[1, 2], dtype=dtype)
        kernel = tf.random.stateless_normal([3, 3, 128, 32], seed=[3, 4], dtype=dtype)

        @tf.function
        def conv_and_grads():
            with tf.GradientTape() as tape:
                tape.watch([images, kernel])
                out = tf.reduce_sum(tf.nn.conv2d(images, kernel, 1, "SAME"))
            return tape.gradient(out, [images, kernel])

        conv_and_grads()  # traced and warmed up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            [g.numpy() for g in conv_and_grads()]
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    return timed(tf.bfloat16) / timed(tf.float32)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask: taskset, cgroups' cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cores_per_worker() -> int:
    """This worker's share of the host's cores: cores / local workers, at least 1."""
    return max(1, usable_cores() // distributed.launcher_local_size())


@dataclasses.dataclass(frozen=True)
class ThreadPools:
    """The thread pools of one worker: TensorFlow's intra-op and inter-op pools and tf.data's
    private pool; None leaves one as TensorFlow sizes it (or as its environment variable says)."""
    intra_op: Optional[int]
    inter_op: Optional[int]
    dataset_private: Optional[int]

    def describe(self) -> str:
        """e.g. "threads: 1 intra-op, 1 inter-op, 1 tf.data" ("" when TensorFlow sizes all)."""
        sized = [f"{value} {name}" for name, value in (
            ("intra-op", self.intra_op), ("inter-op", self.inter_op),
            ("tf.data", self.dataset_private)) if value is not None]
        return f"threads: {', '.join(sized)}" if sized else ""


def thread_pools(*, intra_op: Optional[int] = None, inter_op: Optional[int] = None,
                 dataset_private: Optional[int] = None) -> ThreadPools:
    """The pools of this worker: what the user gave, else what the environment's
    TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS say (TensorFlow reads them itself), else this
    worker's share of the cores. Without a launcher (one process on the host) TensorFlow's own
    sizing is kept for everything but what the user gave."""
    share = cores_per_worker() if distributed.launcher_local_size() > 1 else None

    def pick(given, variable):
        if given is not None:
            return given
        if variable and os.environ.get(variable):
            return None  # TensorFlow reads the variable itself
        return share

    return ThreadPools(intra_op=pick(intra_op, _THREAD_VARIABLES["intra_op"]),
                       inter_op=pick(inter_op, _THREAD_VARIABLES["inter_op"]),
                       dataset_private=pick(dataset_private, None))


def apply_thread_pools(pools: ThreadPools) -> None:
    """Sizes TensorFlow's pools; before its context starts (before the first op)."""
    import tensorflow as tf
    if pools.intra_op is not None:
        tf.config.threading.set_intra_op_parallelism_threads(pools.intra_op)
    if pools.inter_op is not None:
        tf.config.threading.set_inter_op_parallelism_threads(pools.inter_op)
