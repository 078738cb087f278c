"""What each worker finds out on its own host, one probe per concern. Every probe returns a dict
of plain values (gathered to rank 0 as they are) and runs under a time limit (`bounded`): a
probe that does not finish is reported as such, never waited on."""
import dataclasses
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata

import tensorflow as tf

import nets
from engine import distributed, files
from launch import build_run, failures, hardware, onednn
from launch.build import lock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Listings longer than this are compared by their digest alone (a class-per-folder ImageNet
# has a million files; its digest still says whether two hosts differ).
LISTED_FILES = 5000


def bounded(probe, limit, *args, **kwargs):
    """probe(*args, **kwargs) in a thread of its own: its dict, or {"error": ...} when it
    raised, or {"timeout": limit} when it did not finish in `limit` seconds (the thread is
    left behind: the command exits when it has reported)."""
    result = {}

    def target():
        try:
            result.update(probe(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - a probe's failure is its finding
            result["error"] = said(error)
    thread = threading.Thread(target=target, daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        return {"timeout": limit}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def said(error):
    """The error as one line: its type and what it says (autograph's "in user code:" errors
    say it last)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0] == "in user code:":
        return lines[-1][:300]
    return f"{type(error).__name__}: {failures.first_line(error)}"


def software():
    """Python, the packages of this lane's lock as installed, Horovod's build, this project's
    source (commit and a digest of its modules) and the locks' digests."""
    lane = "2.15" if tf.__version__.startswith("2.15") else "2.21"
    _, constraints = lock.paths(lane)
    packages = {name: _installed(name) for name in lock.read_pins(constraints)}
    packages["tensorflow (imported)"] = tf.__version__
    return {"python": platform.python_version(), "packages": packages,
            "horovod_build": _horovod_build(), "project": _project(),
            "locks": {os.path.basename(p): _digest_file(p)
                      for p in sorted(glob.glob(os.path.join(lock.HERE, "constraints-*.txt")))}}


def _installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _horovod_build():
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        return {"error": str(error)}
    return {"version": _installed("horovod"),
            "controllers": [c for c, built in (("gloo", hvd.gloo_built()),
                                               ("mpi", hvd.mpi_built())) if built],
            "tensor_operations": [o for o, built in (("nccl", hvd.nccl_built()),
                                                     ("ddl", hvd.ddl_built()),
                                                     ("ccl", hvd.ccl_built())) if built]}


def _project():
    commit = None
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256()
    for folder in ("engine", "nets", "input", "launch"):
        for path in sorted(glob.glob(os.path.join(REPO, folder, "**", "*.py"), recursive=True)):
            digest.update(os.path.relpath(path, REPO).encode())
            digest.update(_digest_file(path).encode())
    return {"commit": commit, "source": digest.hexdigest()[:16]}


def _digest_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def device(plan):
    """The device kind, native bf16, the dtype the recipe gets here, oneDNN and threads."""
    bf16 = hardware.bf16_support(hpu=plan.machine.run_on_hpu)
    flags = sorted(onednn.cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16",
                                         "amx_tile", "avx512_vnni"})
    asked = plan.dtype_asked
    dtype = ("bf16" if bf16.native else "fp32") if asked == "auto" else asked
    decision = onednn.settled()
    return {"device": bf16.device, "cpu_flags": flags, "bf16_native": bf16.native,
            "bf16_missing": bf16.missing, "dtype_asked": asked, "dtype": dtype,
            "bf16_emulated": dtype == "bf16" and not bf16.native,
            "onednn": hardware.onednn_enabled(),
            "onednn_choice": decision.describe() if decision else None,
            "threads": plan.machine.pools.describe() or "TensorFlow's own sizing",
            "cores": hardware.usable_cores()}


def data_listing(plan):
    """dataset_dir's files (relative name and size), their digest and count; the records of
    each split as the input module counts them."""
    root = plan.input.dataset_dir
    if plan.input.name == "synthetic" or not root:
        return {"synthetic": True}
    if not os.path.isdir(root):
        return {"missing": root}
    entries = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                entries.append((os.path.relpath(path, root), os.path.getsize(path)))
            except OSError:
                entries.append((os.path.relpath(path, root), -1))
    entries.sort()
    digest = hashlib.sha256("\n".join(f"{n}\t{s}" for n, s in entries).encode()).hexdigest()
    return {"files": len(entries), "bytes": sum(max(s, 0) for _, s in entries),
            "digest": digest[:16],
            "listing": entries if len(entries) <= LISTED_FILES else None}


def data_sample(plan, data):
    """The examples of each split as counted, and a sample of each decoded (two training
    micro-batches through the recipe's pipeline, one validation batch)."""
    counts = {split: data.num_examples(split) for split in ("train", "validation")}
    micro = plan.micro_batch_size
    for images, _ in data.train_dataset(micro, seed=1).take(2):
        tf.debugging.assert_all_finite(images, "a decoded training image")
    for images, _, _ in data.eval_dataset(micro).take(1):
        tf.debugging.assert_all_finite(images, "a decoded validation image")
    return {"examples": counts, "decoded": 3 * micro}


def model_dir_space(plan, checkpoint_bytes, *, writes: bool):
    """Where model_dir lives: its nearest existing folder, free bytes there, whether this
    worker can write it (rank 0 alone writes, so only its answer blocks), and the bytes the run
    will keep: checkpoints x (--keep_checkpoints + the one being written), and the best one.
    `writes`: try a file there (os.access misses read-only mounts for root); it is left for
    the shared-folder check to find, as "marker", and removed by it."""
    existing = plan.model_dir
    while not os.path.isdir(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    found = {"folder": existing, "free": shutil.disk_usage(existing).free,
             "writable": os.access(existing, os.W_OK), "exists": existing == plan.model_dir,
             "needs": checkpoint_bytes * (plan.loop.keep_checkpoints + 1
                                          + bool(plan.loop.keep_best))}
    if writes and found["writable"]:
        try:
            fd, found["marker"] = tempfile.mkstemp(prefix=".preflight-", dir=existing)
            os.close(fd)
        except OSError as error:
            found.update(writable=False, why=files.cause(error))
    return found


def step(plan, *, steps=3):
    """One worker's train step at the recipe's micro-batch on synthetic input (no collective:
    a one-process backend), `steps` timed after one warm-up: seconds per step, the peak
    memory it took, the checkpoint it writes in bytes. Out of memory: halves the micro-batch
    until one fits and says which."""
    micro = plan.micro_batch_size
    tried = []
    while micro >= 1:
        try:
            measured = _timed_step(plan, micro, steps)
            measured.update(micro_batch=micro, fits=micro == plan.micro_batch_size,
                            too_large=tried)
            return measured
        except (tf.errors.ResourceExhaustedError, MemoryError) as error:
            tried.append({"micro_batch": micro, "error": said(error)[:200]})
            micro //= 2
    return {"fits": False, "micro_batch": 0, "too_large": tried}


def _timed_step(plan, micro, steps):
    # One micro-batch slot on one worker: the step a worker runs per micro-batch.
    one = dataclasses.replace(plan, slots=1, workers=1,
                              loop=dataclasses.replace(plan.loop, batch_size=micro))
    net = build_run.build_net(one)
    train_step = build_run.build_train_step(one, net=net, backend=distributed.SingleProcess())
    size = plan.input.options.image_size
    images = tf.random.stateless_uniform([micro, size, size, 3], (1, 2), -1.0, 1.0)
    labels = tf.random.stateless_uniform([micro], (3, 4), 0, net.num_classes, tf.int32)
    before = _peak_bytes()
    train_step.build()  # the optimizer's slots
    train_step(images, labels)  # traces
    net.variables[0].numpy()
    started = time.perf_counter()
    for _ in range(steps):
        train_step(images, labels)
    net.variables[0].numpy()  # the steps ran
    seconds = (time.perf_counter() - started) / steps
    return {"seconds_per_step": round(seconds, 4),
            "images_per_sec": round(micro / seconds, 1),
            "peak_bytes": max(0, _peak_bytes() - before),
            "parameters": nets.parameter_count(net),
            "checkpoint_bytes": _checkpoint_bytes(train_step)}


def _peak_bytes():
    """The device's peak allocation where TensorFlow reports one (GPU, HPU), else the
    process's peak resident memory (VmHWM)."""
    for kind in ("GPU", "HPU"):
        if tf.config.list_logical_devices(kind):
            try:
                return tf.config.experimental.get_memory_info(f"{kind}:0")["peak"]
            except (ValueError, tf.errors.OpError):
                pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _checkpoint_bytes(train_step):
    """The bytes one checkpoint of this step's state takes, written to a temporary folder
    (never model_dir) and measured."""
    objects = {"net": train_step.net, "optimizer": train_step.optimizer}
    if train_step.ema is not None:
        objects["ema"] = train_step.ema
    with tempfile.TemporaryDirectory(prefix="preflight-") as folder:
        tf.train.Checkpoint(**objects).write(os.path.join(folder, "ckpt"))
        return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))


def input_rate(plan, data, *, worker, workers, seconds):
    """This worker's share of the recipe's training pipeline on the real data, read for about
    `seconds` after its first batch: images per second."""
    batches = data.train_dataset(plan.batch_size // workers, worker=worker, workers=workers,
                                 seed=1, micro_batches=plan.micro_batches)
    iterator = iter(batches)
    next(iterator)
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch, _ = next(iterator)
        images += int(batch.shape[0])
    return {"images_per_sec": round(images / (time.perf_counter() - started), 1)}


def all_reduce(backend, parameters, *, repeats=5):
    """The all-reduce of a gradient of the net's size (float32) across every worker, after one
    warm-up: seconds, and the bytes each worker moves per second; the interface Horovod was
    told to use."""
    gradient = tf.ones([parameters], tf.float32)
    backend.average_gradients([gradient])
    started = time.perf_counter()
    for _ in range(repeats):
        out = backend.average_gradients([gradient])
    _ = out[0].numpy()
    seconds = (time.perf_counter() - started) / repeats
    # A ring all-reduce sends and receives 2 (n - 1) / n of the tensor per worker.
    moved = 4 * parameters * 2 * (backend.size - 1) / max(1, backend.size)
    return {"seconds": round(seconds, 5),
            "gb_per_sec": round(moved / seconds / 1e9, 3) if backend.size > 1 else None,
            "interface": (os.environ.get("HOROVOD_GLOO_IFACE")
                          or os.environ.get("NCCL_SOCKET_IFNAME")
                          or os.environ.get("HCCL_SOCKET_IFNAME") or "Horovod's choice"),
            "workers": backend.size}


def identity(rank):
    """This worker: its rank, its host as the launcher named it (horovodrun's -H name, else
    the host name), its process and Python."""
    peer = distributed.this_process(rank)
    return {"rank": rank, "host": os.environ.get("HOROVOD_HOSTNAME") or peer.host,
            "hostname": peer.host, "pid": peer.pid, "python": sys.executable}
