"""launch/failures.py in-process: each kind of error named by its cause, with its exit code, and
the bad-input diagnosis run only for errors from the input pipeline, within its time budget.
Through the command line: tests/reliability/test_failures_cli.py."""
import errno
import os
import subprocess

import pytest
import tensorflow as tf

import engine
from engine import distributed
from input import records
from launch import failures, plan, train_flags
from tests import helpers
from tests.input.test_bad_input import build, corrupt_jpeg_dir  # noqa: F401 - a fixture

pytestmark = pytest.mark.smoke

OOM = ("OOM when allocating tensor with shape[8,256,56,56] and type float on "
       "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")


def planned(tmp_path, *args):
    from absl import flags
    fv = flags.FlagValues()
    train_flags.define(fv, validate=False)
    fv(["train", "--dataset_dir=/nowhere", f"--model_dir={tmp_path}", *helpers.TINY,
        "--batch_size=16", "--micro_batch_size=8", "--image_size=64", "--steps_per_epoch=2",
        "--num_classes=10", *args])
    return plan.from_flags(fv).settle(plan.Settlement(seed=1, dtype="fp32", recorded_slots=None),
                                      workers=1)


class NoScan:
    """An input module that must not be asked to explain (its scan would decode everything)."""

    def explain(self, error, **kwargs):
        raise AssertionError(f"asked to explain {error!r}")


class Explains:
    def __init__(self):
        self.asked = []

    def explain(self, error, *, splits, seconds):
        self.asked.append((splits, seconds))
        return records.InputError("bad input: somewhere record 3: broken")


class Trainer:
    def __init__(self, ran):
        self.ran = ran

    def steps_run(self):
        return self.ran


def test_out_of_memory_names_the_device_the_micro_batch_and_what_lowers_it(tmp_path):
    run = failures.RunSoFar(plan=planned(tmp_path), data=NoScan(), trainer=Trainer(0))
    failure = failures.explain(tf.errors.ResourceExhaustedError(None, None, OOM), run)
    assert failure.exit_code == failures.EXIT_OUT_OF_MEMORY == 4
    line = failure.line
    assert line.startswith("out of memory on GPU:0 (OOM when allocating tensor"), line
    for words in ("a micro-batch of 8 images per worker", "--micro_batch_size=4 (the same "
                  "--batch_size", "--recompute", "a smaller --image_size (now 64)",
                  f"kept: no checkpoint found in {tmp_path}/checkpoints"):
        assert words in line, (words, line)
    assert "ran before" not in line and "\n" not in line
    grown = failures.explain(tf.errors.ResourceExhaustedError(None, None, OOM),
                             failures.RunSoFar(plan=planned(tmp_path, "--recompute"),
                                               trainer=Trainer(120))).line
    assert "120 steps ran before in this process, so memory grew" in grown
    assert "--recompute" not in grown
    host = failures.explain(MemoryError(), failures.RunSoFar(plan=planned(tmp_path)))
    assert host.exit_code == 4 and host.line.startswith("out of memory on the host")


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/a/flags.txt"),
    OSError(errno.EROFS, os.strerror(errno.EROFS), "/runs/a/flags.txt"),
    tf.errors.ResourceExhaustedError(None, None, "/runs/a/flags.txt; No space left on device"),
])
def test_a_full_or_read_only_disk_is_not_an_out_of_memory(tmp_path, error):
    failure = failures.explain(error, failures.RunSoFar(plan=planned(tmp_path), data=NoScan()))
    assert failure.exit_code == failures.EXIT_DISK == 6
    assert "/runs/a/flags.txt" in failure.line
    assert "free space (or make model_dir writable) and run the same command again" in \
        failure.line


def test_a_failed_collective_outside_elastic_training_is_a_lost_worker(tmp_path):
    error = tf.errors.UnknownError(None, None, "Graph execution error:\n\nDetected at node "
                                   "allreduce/HorovodGroupedAllreduce\nHorovod has been shut "
                                   "down. This was caused by an exception on one of the ranks")
    failure = failures.explain(error, failures.RunSoFar(plan=planned(tmp_path), data=NoScan()))
    assert failure.exit_code == failures.EXIT_LOST_WORKER == 5
    assert failure.line.startswith("a worker stopped answering: a collective failed (Horovod "
                                   "has been shut down; its log line above names the lost "
                                   "peer's address)"), failure.line
    assert "run the same command again to resume" in failure.line
    assert "elastic mode" in failure.line


def test_the_lost_worker_is_named_by_rank_where_its_process_can_be_seen(tmp_path):
    """Peers as gathered at the start: one whose process has ended on this host is named; when
    every process here still runs, the other hosts' ranks are the suspects."""
    me = distributed.this_process(0)
    ended = subprocess.Popen(["true"])
    ended.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        here_gone = distributed.Peer(1, me.host, ended.pid, me.space)
        here_alive = distributed.Peer(1, me.host, alive.pid, me.space)
        elsewhere = [distributed.Peer(r, "host-b", 99, "another kernel") for r in (2, 3)]
        error = tf.errors.UnknownError(None, None, "HorovodAllreduce failed")

        def line(peers):
            return failures.explain(error, failures.RunSoFar(plan=planned(tmp_path), rank=0,
                                                             peers=peers)).line
        assert line([me, here_gone, *elsewhere]).startswith(
            f"a worker stopped answering: rank 1 (process {ended.pid} on {me.host}) is gone; "
            f"a collective failed")
        assert line([me, here_alive, *elsewhere]).startswith(
            "a worker stopped answering: every worker on this host still runs, so the lost "
            "one is on host-b (rank 2, 3); a collective failed")
        assert line([me, here_alive]).startswith(
            "a worker stopped answering: every worker still runs (one stopped taking part)")
    finally:
        alive.kill()
        alive.wait()


def test_only_an_error_of_the_input_pipeline_is_diagnosed_as_input_within_the_budget(tmp_path):
    data = Explains()
    pipeline_error = tf.errors.InvalidArgumentError(
        None, None, "Error in user-defined function passed to MapDataset:2 transformation with "
        "iterator: Iterator::Root::Prefetch::ParallelMapV2: Unknown image file format.")
    failure = failures.explain(pipeline_error, failures.RunSoFar(plan=planned(tmp_path),
                                                                 data=data))
    assert (failure.exit_code, failure.line) == (1, "bad input: somewhere record 3: broken")
    assert data.asked == [(("train", "validation"), failures.DIAGNOSIS_SECONDS)]
    other = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [4,10] vs. [4,5]")
    failure = failures.explain(other, failures.RunSoFar(plan=planned(tmp_path), data=data))
    assert failure.exit_code == failures.EXIT_OTHER and len(data.asked) == 1


def test_any_other_error_gives_its_first_line_and_the_whole_one_in_model_dir(tmp_path):
    def deep():
        raise ValueError("something unexpected\nsecond line")
    try:
        deep()
    except ValueError as error:
        failure = failures.explain(error, failures.RunSoFar(plan=planned(tmp_path)))
    assert failure.exit_code == failures.EXIT_OTHER == 7
    assert f"ValueError: something unexpected; the whole error: {tmp_path}/error.log" in \
        failure.line
    logged = (tmp_path / "error.log").read_text()
    assert "Traceback" in logged and "in deep" in logged and "second line" in logged


def test_a_bad_flag_file_or_checkpoint_keeps_its_own_line_and_exit_code(tmp_path):
    for error in (records.InputError("bad input: x"), engine.CheckpointError("ckpt-4 cannot")):
        failure = failures.explain(error, failures.RunSoFar(plan=planned(tmp_path)))
        assert (failure.exit_code, failure.line) == (1, str(error))


def test_the_bad_example_search_stops_at_its_budget_and_says_so(corrupt_jpeg_dir):  # noqa: F811
    """The bad record is the 5th of the split: a search of 0 s gives up after the first example
    and says how far it got; an unbounded one finds it."""
    data = build(corrupt_jpeg_dir)
    error = tf.errors.InvalidArgumentError(None, None, "Iterator::Root: Invalid JPEG data")
    bounded = str(data.explain(error, splits=["train"], seconds=0.0))
    assert bounded.startswith("bad input: Iterator::Root: Invalid JPEG data; no bad example "
                              "among the first 1 examples of train (searched for 0 s): run "
                              "again with --skip_corrupt"), bounded
    found = str(data.explain(error, splits=["train"], seconds=60.0))
    assert found.startswith(f"bad input: {corrupt_jpeg_dir}/train/train-00001-of-00002 record 1")


def test_the_first_line_skips_tensorflows_stack_of_where_the_op_was_defined():
    message = ("Graph execution error:\n\nDetected at node gradients/conv/Conv2DBackpropInput "
               "defined at (most recent call last):\n  File \"<frozen runpy>\", line 198, in "
               "_run_module_as_main\n\n  File \"/x/engine/step.py\", line 80, in _gradients\n\n"
               "OOM when allocating tensor with shape[64,32,128,128] and type float on "
               "/job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu_bfc\n\t [[{{node "
               "gradients/conv/Conv2DBackpropInput}}]] [Op:__inference_step_123]")
    error = tf.errors.ResourceExhaustedError(None, None, message)
    assert failures.first_line(error) == (
        "OOM when allocating tensor with shape[64,32,128,128] and type float on "
        "/job:localhost/replica:0/task:0/device:CPU:0 by allocator cpu_bfc")


def test_a_sigterm_while_an_error_is_reported_reports_the_error(tmp_path):
    """A launcher's SIGTERM that lands while an error unwinds (horovodrun terminates the
    survivors of a dead worker) interrupts it: the error is still what is named."""
    collective = tf.errors.UnknownError(None, None, "HorovodAllreduce failed: connection reset")
    try:
        try:
            raise collective
        finally:
            raise failures.Terminated()
    except failures.Terminated as terminated:
        failure = failures.explain(terminated, failures.RunSoFar(plan=planned(tmp_path)))
    assert failure.exit_code == failures.EXIT_LOST_WORKER
    alone = failures.explain(failures.Terminated(), failures.RunSoFar(plan=planned(tmp_path)))
    assert alone.exit_code == 143 and alone.line.startswith("terminated (SIGTERM) outside")


def test_writes_leave_a_whole_file_or_none(tmp_path):
    """engine/files.py: a rewrite that cannot land leaves the old file and no temporary one; an
    append into a model_dir that vanished names the file and is a disk failure."""
    from engine import files
    target = tmp_path / "flags.txt"
    target.write_text("old\n")
    (tmp_path / "flags.txt.tmp").mkdir()  # the temporary name is taken: the write fails
    with pytest.raises(engine.WriteFailed, match=f"could not write {target}: "):
        files.write_whole(str(target), "new\n")
    assert target.read_text() == "old\n"
    gone = tmp_path / "gone" / "metrics.jsonl"
    with pytest.raises(engine.WriteFailed, match=f"could not write {gone}: No such file"):
        files.append_whole(str(gone), "{}\n")
    failure = failures.explain(engine.WriteFailed(f"could not write {gone}: No such file or "
                                                  f"directory"),
                               failures.RunSoFar(plan=planned(tmp_path / "gone")))
    assert failure.exit_code == failures.EXIT_DISK
    assert f"model_dir {tmp_path}/gone is gone" in failure.line
