"""What ended a run, named by its cause in one line, with an exit code per kind.

A run can end in an error from many places, and one diagnosis for all of them misleads: an
out-of-memory reported as bad input after decoding the whole data set, a dead peer as a corrupt
record. `explain(error, run)` sorts an error by what it is, in this order, and each kind says
what is kept and what to do:

    refused         1  a bad flag, file, record or checkpoint (launch.errors.ONE_LINE_ERRORS)
    stall           3  no progress within --stall_timeout (the watchdog's own line and exit)
    out of memory   4  the device or the host: the micro-batch, and the flags that lower it
    lost worker     5  a Horovod collective failed outside elastic training
    disk            6  no space, read-only, over quota or a file too large: the file, and
                       what is kept
    bad input       1  an error raised inside the input pipeline (a tf.data iterator): the bad
                       example, looked for within DIAGNOSIS_SECONDS, never a decode of the whole
                       data set
    anything else   7  the error's first line; its whole text in <model_dir>/error.log
    SIGTERM       143  outside the training loop (inside it, the loop checkpoints and stops)

`RunSoFar` is what the entry point knows when the error comes: the plan, the input module and
the Trainer, each None until built.
"""
import dataclasses
import os
import re
import signal
import tempfile
import traceback

import tensorflow as tf

import engine
from engine import distributed, files
from input import records
from launch.errors import ONE_LINE_ERRORS

EXIT_REFUSED = 1
# 3: a stall, which the watchdog ends itself (engine.watchdog.STALL_EXIT_CODE)
EXIT_OUT_OF_MEMORY = 4
EXIT_LOST_WORKER = 5
EXIT_DISK = 6
EXIT_OTHER = 7
EXIT_TERMINATED = 128 + signal.SIGTERM  # as if the signal had ended the process

# The time the bad-input diagnosis may spend decoding examples one at a time.
DIAGNOSIS_SECONDS = 30.0
ERROR_LOG = "error.log"


class Terminated(Exception):
    """SIGTERM outside the training loop (whose hook turns it into a checkpoint and a stop)."""


def terminate_by_exception() -> None:
    """SIGTERM raises Terminated from here on (outside the loop): an error that is being
    reported when a launcher terminates the process is still reported (`explain` names the
    error that Terminated interrupted), and a run stopped before training says so."""
    def handler(signum, frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, handler)


def hold_signals() -> None:
    """Holds SIGTERM and SIGINT back while a failure is reported: its line is written first."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


@dataclasses.dataclass
class RunSoFar:
    """What was built when the error came (None: not yet); `splits`: the input module's splits
    the run reads."""
    plan: object = None
    data: object = None
    trainer: object = None
    splits: tuple = ("train", "validation")
    chief: bool = True            # this worker writes model_dir's files
    rank: int = 0
    peers: list = None            # every worker's distributed.Peer, gathered at the start


@dataclasses.dataclass(frozen=True)
class Failure:
    exit_code: int
    line: str


def explain(error: BaseException, run: RunSoFar) -> Failure:
    """The error as one line and its exit code (see the module's table)."""
    if isinstance(error, Terminated):
        interrupted = error.__context__
        if isinstance(interrupted, Exception) and not isinstance(interrupted, Terminated):
            return explain(interrupted, run)
        return Failure(EXIT_TERMINATED, f"terminated (SIGTERM) outside the training loop; "
                                        f"kept: {kept(run.plan)}; run the same command again to "
                                        f"resume")
    if disk_error(error):
        return Failure(EXIT_DISK, _disk_line(error, run))
    if isinstance(error, ONE_LINE_ERRORS):
        return Failure(EXIT_REFUSED, str(error))
    if isinstance(error, (tf.errors.ResourceExhaustedError, MemoryError)):
        return Failure(EXIT_OUT_OF_MEMORY, _memory_line(error, run))
    if distributed.is_collective_failure(error):
        return Failure(EXIT_LOST_WORKER, _lost_worker_line(error, run))
    if from_input_pipeline(error) and run.data is not None:
        return Failure(EXIT_REFUSED, str(run.data.explain(error, splits=run.splits,
                                                          seconds=DIAGNOSIS_SECONDS)))
    return Failure(EXIT_OTHER, _other_line(error, run))


def disk_error(error: BaseException) -> bool:
    """A write that failed for the disk's sake: full, over quota, read-only, a file too large."""
    if isinstance(error, engine.WriteFailed):
        return True
    if isinstance(error, OSError):
        return error.errno in files.DISK_ERRNOS
    if isinstance(error, tf.errors.OpError):
        return any(words in error.message for words in files.DISK_CAUSES)
    return False


def from_input_pipeline(error: BaseException) -> bool:
    """Whether a TensorFlow error was raised inside a tf.data pipeline: its message names the
    iterator (`Iterator::...` or the IteratorGetNext op), or the records are damaged."""
    if not isinstance(error, tf.errors.OpError):
        return False
    return (isinstance(error, tf.errors.DataLossError) or "Iterator::" in error.message
            or "IteratorGetNext" in error.message)


def first_line(error: BaseException, limit: int = 300) -> str:
    """input.records.one_line of the error, after the Python stack that TensorFlow prints where
    the failing op was defined ("Detected at node ... (most recent call last):") is left out."""
    text = getattr(error, "message", None) or str(error)
    lines, in_stack = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Detected at node"):
            in_stack = True
            continue
        if in_stack and (raw[:1].isspace() or not line or line.startswith(("File \"", "<"))):
            continue
        in_stack = False
        lines.append(raw)
    line = records.one_line("\n".join(lines))
    if line == "str":  # one_line names the type of what it was given when no line says anything
        line = type(error).__name__
    return line if len(line) <= limit else line[:limit - 3] + "..."


def kept(plan) -> str:
    """What a rerun starts from: model_dir's last whole checkpoint, or nothing yet."""
    if plan is None:
        return "nothing was written"
    directory = os.path.join(plan.loop.model_dir, "checkpoints")
    try:
        latest = tf.train.latest_checkpoint(directory)
    except (tf.errors.OpError, OSError):
        latest = None
    if latest is None:
        return f"no checkpoint found in {directory}"
    step = latest.rsplit("-", 1)[-1]
    return f"the checkpoint of step {step} ({latest}) and the records up to it"


def _memory_line(error, run):
    plan = run.plan
    if isinstance(error, MemoryError):
        where = "the host"
    else:
        device = re.search(r"device:([A-Za-z_]+:\d+)", error.message)
        where = device.group(1) if device else "the device"
    line = f"out of memory on {where} ({first_line(error, 160)})"
    micro = _micro_batch_size(plan)
    if micro is not None:
        options = dict(plan.net.options)
        lower = [f"--micro_batch_size={max(1, micro // 2)} (the same --batch_size: more "
                 f"micro-batches per step)"] if micro > 1 else []
        if not options.get("recompute"):
            lower.append("--recompute")
        lower.append(f"a smaller --image_size (now {plan.input.options.image_size})")
        line += (f" at a micro-batch of {micro} image{'s' * (micro > 1)} per worker; what "
                 f"lowers memory: {', '.join(lower)}")
    ran = _steps_run(run.trainer)
    if ran:
        line += (f"; {ran} step{'s' * (ran > 1)} ran before in this process, so memory grew "
                 f"(a leak, or a larger batch or evaluation than the steps before)")
    return f"{line}; kept: {kept(plan)}"


def _micro_batch_size(plan):
    """The images per micro-batch: the settled plan's, else the one asked (None: not known)."""
    if plan is None:
        return None
    if plan.slots:
        return plan.micro_batch_size
    return plan.micro_batch_size_asked


def _steps_run(trainer) -> int:
    """Steps this process completed before the error (0 when unknown)."""
    if trainer is None:
        return 0
    try:
        return trainer.steps_run()
    except Exception:  # noqa: BLE001 - a read after an error must not hide it
        return 0


def _lost_worker_line(error, run):
    plan = run.plan
    said = first_line(error, 200)
    if "has been shut down" in said:  # Horovod's own line, logged before, names the peer
        said = "Horovod has been shut down; its log line above names the lost peer's address"
    line = (f"a worker stopped answering: {_who_is_lost(run)}a collective failed ({said}); "
            f"kept: {kept(plan)}; run the same command again to resume from it")
    return line + ("; under horovodrun's elastic mode (--min-np/--max-np with a "
                   "--host-discovery-script) the run would have gone on without it")


def _who_is_lost(run):
    """The workers whose process is gone, as far as this one can see; '' when it cannot tell."""
    if not run.peers or len(run.peers) < 2:
        return ""
    gone, elsewhere = distributed.lost_peers(run.peers, run.rank)
    if gone:
        return "".join(f"rank {p.rank} (process {p.pid} on {p.host}) is gone; " for p in gone)
    if elsewhere:
        hosts = {}
        for peer in elsewhere:
            hosts.setdefault(peer.host, []).append(str(peer.rank))
        listed = ", ".join(f"{host} (rank {', '.join(ranks)})" for host, ranks in hosts.items())
        return f"every worker on this host still runs, so the lost one is on {listed}; "
    return "every worker still runs (one stopped taking part); "


def _disk_line(error, run):
    if isinstance(error, engine.WriteFailed):
        what = str(error)
    elif isinstance(error, OSError):
        target = error.filename or "a file of the run"
        what = f"could not write {target}: {files.cause(error)}"
    else:  # TensorFlow's file system: the first absolute path of its message is the file
        path = re.search(r"(/[^\s;:'\"]+)", getattr(error, "message", ""))
        what = (f"could not write {path.group(1) if path else 'a file of the run'}: "
                f"{files.cause(error)}")
    model_dir = run.plan.loop.model_dir if run.plan is not None else None
    if model_dir is not None and not os.path.isdir(model_dir):
        return (f"{what}; model_dir {model_dir} is gone (its file system unmounted, or the "
                f"directory removed, while the run wrote to it): bring it back and run the same "
                f"command again to resume from its last checkpoint")
    return (f"{what}; kept: {kept(run.plan)}, nothing half-written; free space (or make "
            f"model_dir writable) and run the same command again to resume")


def _other_line(error, run):
    where = _write_error_log(error, run.plan if run.chief else None)
    return (f"stopped by an error this command does not diagnose: {type(error).__name__}: "
            f"{first_line(error)}; the whole error: {where}; kept: {kept(run.plan)}")


def _write_error_log(error, plan) -> str:
    """The error's whole text in model_dir/error.log (the chief's; a temporary file where
    there is no plan or the write fails)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if plan is not None:
        path = os.path.join(plan.loop.model_dir, ERROR_LOG)
        try:
            with open(path, "w") as f:
                f.write(text)
            return path
        except OSError:
            pass
    with tempfile.NamedTemporaryFile("w", prefix="densenet-error-", suffix=".log",
                                     delete=False) as f:
        f.write(text)
        return f.name
