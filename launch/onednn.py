"""Whether TensorFlow runs its CPU kernels through oneDNN: decided per machine, before TensorFlow
loads (it reads TF_ENABLE_ONEDNN_OPTS once, at import).

TensorFlow turns oneDNN on by default only on CPUs with AVX512_VNNI, AVX512_BF16 or AMX. Where it
is on, the training step is several times faster on the CPUs measured here, and elsewhere it may
be too (an AVX-512 CPU without VNNI is left on Eigen's kernels): so unless the user set
TF_ENABLE_ONEDNN_OPTS, a short probe trains a small DenseNet a few steps in two child processes,
one with oneDNN and one without, and the faster setting is used (`python -m launch.benchmark
--mode=train`, run with either setting, measures the full net). The answer is cached per CPU
and TensorFlow version, so the probe runs once per machine. Where the CPU computes bf16 natively,
oneDNN stays on (native bf16 goes through it), and on a GPU or Gaudi host TensorFlow's default is
kept (oneDNN touches only CPU kernels there). Nothing here imports TensorFlow.
"""
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Optional

VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# TensorFlow's own rule (x86 Linux): oneDNN on by default where the CPU has one of these.
TF_DEFAULT_ON_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
# The CPU flags that give TensorFlow native bf16 arithmetic (through oneDNN): AVX512_BF16
# (Cooper Lake, Zen 4 and later) or AMX-BF16 (Sapphire Rapids and later).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# This variable, when set, replaces /proc/cpuinfo's flags (space-separated): a test stands in for
# another CPU with it, and a container whose /proc lies can be told the truth.
CPU_FLAGS_VARIABLE = "DENSENET_CPU_FLAGS"
# A setting must beat the other by this factor to replace TensorFlow's default (noise margin).
MARGIN = 1.05
PROBE_TIMEOUT_SEC = 300
CACHE_FILE = "onednn-probe.json"


def cpuinfo(field):
    """The first value of `field` in /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset:
    """The CPU's feature flags (lower case), from $DENSENET_CPU_FLAGS or /proc/cpuinfo."""
    text = os.environ.get(CPU_FLAGS_VARIABLE)
    if text is None:
        text = cpuinfo("flags") or ""
    return frozenset(text.lower().split())


def native_bf16_flags() -> bool:
    """Whether the CPU's flags name a native bf16 unit (AVX512_BF16 or AMX-BF16)."""
    return any(flag in cpu_flags() for flag in CPU_BF16_FLAGS)


def tensorflow_default() -> bool:
    """What TensorFlow picks when TF_ENABLE_ONEDNN_OPTS is unset (x86 Linux)."""
    return any(flag in cpu_flags() for flag in TF_DEFAULT_ON_FLAGS)


@dataclasses.dataclass(frozen=True)
class Decision:
    enabled: bool
    reason: str                      # why, in a few words ("probe", "TF_ENABLE_ONEDNN_OPTS=0")
    seconds_on: Optional[float] = None   # the probe's median step time with oneDNN
    seconds_off: Optional[float] = None  # and without

    def describe(self) -> str:
        """e.g. "oneDNN on (probe: 3.10x faster with it; TF_ENABLE_ONEDNN_OPTS=0 turns it
        off)"."""
        override = "" if self.reason.startswith(VARIABLE) else \
            f"; {VARIABLE}={int(not self.enabled)} turns it {'off' if self.enabled else 'on'}"
        return f"oneDNN {'on' if self.enabled else 'off'} ({self.reason}{override})"


_settled: Optional[Decision] = None


def settled() -> Optional[Decision]:
    """The decision `settle` took in this process (None when it was not called)."""
    return _settled


def settle() -> Decision:
    """Decides, sets TF_ENABLE_ONEDNN_OPTS for this process and its children, and returns the
    decision; before TensorFlow is imported (after, it only reports what TensorFlow runs)."""
    global _settled
    decision = decide()
    os.environ[VARIABLE] = "1" if decision.enabled else "0"
    _settled = decision
    return decision


def decide() -> Decision:
    given = os.environ.get(VARIABLE)
    if given is not None:
        enabled = given.strip().lower() in ("1", "true")
        return Decision(enabled, f"{VARIABLE}={given}")
    if tensorflow_loaded():
        return Decision(tensorflow_default(), "TensorFlow was already loaded with its default")
    if native_bf16_flags():
        return Decision(True, "native bf16 goes through it")
    if _accelerator_host():
        return Decision(tensorflow_default(), "TensorFlow's default on an accelerator host")
    return _probed()


def tensorflow_loaded() -> bool:
    return "tensorflow" in sys.modules


def _accelerator_host() -> bool:
    """An NVIDIA GPU or a Gaudi here (their kernels are not oneDNN's)."""
    nvidia = "/proc/driver/nvidia/gpus"
    return (os.path.isdir(nvidia) and bool(os.listdir(nvidia))) or os.path.exists("/dev/accel")


def cache_path() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "densenet-ctl", CACHE_FILE)


def machine_key() -> str:
    """The CPU (model and flags), TensorFlow's version and the Python: what the answer
    depends on."""
    from importlib import metadata
    versions = []
    for name in ("tensorflow", "tensorflow-cpu"):  # the wheel's name, whichever is installed
        try:
            versions = [f"{name}=={metadata.version(name)}"]
            break
        except metadata.PackageNotFoundError:
            pass
    text = "|".join([cpuinfo("model name") or platform.processor(), platform.machine(),
                     " ".join(sorted(cpu_flags())), ",".join(versions),
                     platform.python_version()])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked_cache():
    """The cache's entries, under an exclusive lock (workers starting together probe once);
    what the block leaves in the dict is written back."""
    path = cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                entries = json.load(f)
            if not isinstance(entries, dict):
                entries = {}
        except (OSError, ValueError):
            entries = {}
        before = dict(entries)
        yield entries
        if entries != before:
            temporary = f"{path}.{os.getpid()}.tmp"
            with open(temporary, "w") as f:
                json.dump(entries, f, indent=1)
            os.replace(temporary, path)


def _probed() -> Decision:
    key = machine_key()
    try:
        with _locked_cache() as entries:
            entry = entries.get(key)
            if not isinstance(entry, dict) or set(entry) != {"seconds_on", "seconds_off"}:
                print(f"oneDNN: timing a small training step with and without it on this CPU, "
                      f"once (about 20 s; the answer is kept in {cache_path()})",
                      file=sys.stderr, flush=True)
                entry = {"seconds_on": probe_seconds(True), "seconds_off": probe_seconds(False)}
                entries[key] = entry
    except ProbeFailed as e:
        return Decision(tensorflow_default(), f"TensorFlow's default: the probe failed ({e})")
    except OSError as e:  # no writable cache: probe without one
        return Decision(tensorflow_default(), f"TensorFlow's default: no cache ({e.strerror})")
    return choose(entry["seconds_on"], entry["seconds_off"])


def choose(seconds_on: float, seconds_off: float) -> Decision:
    """The faster setting where it wins by more than MARGIN, else TensorFlow's default."""
    ratio = max(seconds_on, seconds_off) / min(seconds_on, seconds_off)
    if ratio > MARGIN:
        enabled = seconds_on < seconds_off
        reason = f"probe: {ratio:.2f}x faster {'with' if enabled else 'without'} it"
    else:
        enabled = tensorflow_default()
        reason = f"probe: within {ratio:.2f}x either way, TensorFlow's default"
    return Decision(enabled, reason, seconds_on, seconds_off)


class ProbeFailed(Exception):
    pass


def probe_seconds(enabled: bool) -> float:
    """The median step time of the probe's net, in a child process with oneDNN on or off."""
    env = dict(os.environ, **{VARIABLE: "1" if enabled else "0"}, TF_CPP_MIN_LOG_LEVEL="2")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
    try:
        out = subprocess.run([sys.executable, "-m", "launch.onednn"], capture_output=True,
                             text=True, env=env, timeout=PROBE_TIMEOUT_SEC)
    except subprocess.TimeoutExpired:
        raise ProbeFailed(f"no answer in {PROBE_TIMEOUT_SEC} s") from None
    try:
        return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    except (IndexError, ValueError, KeyError, TypeError):
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeFailed(f"exit {out.returncode}: {tail}") from None


# The probe's net and batch: a small DenseNet with the full net's mix of convolutions, batch
# norms and concatenations, large enough that kernels, not dispatch, take the time.
PROBE_NET = dict(blocks=(3, 3), growth_rate=32, stem_filters=64, num_classes=10)
PROBE_BATCH, PROBE_SIZE, PROBE_STEPS = 8, 112, 5


def time_a_training_step() -> float:
    """Median seconds of a forward and backward pass of the probe net (this process's oneDNN
    setting), after warm-up."""
    import tensorflow as tf

    import nets
    net = nets.build("densenet", **PROBE_NET)
    images = tf.random.stateless_uniform([PROBE_BATCH, PROBE_SIZE, PROBE_SIZE, 3], [1, 2])
    labels = tf.random.stateless_uniform([PROBE_BATCH], [3, 4], 0, 10, tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits, _ = net.forward(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return tape.gradient(loss, net.trainable_variables_in_order())

    for _ in range(2):
        [g.numpy() for g in step()]
    times = []
    for _ in range(PROBE_STEPS):
        start = time.perf_counter()
        [g.numpy() for g in step()]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    print(json.dumps({"seconds": time_a_training_step()}))
