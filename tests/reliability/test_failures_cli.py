"""Failures named by their cause through the real command line (launch/failures.py): an
out-of-memory on a limited allocator, a full disk and a read-only model_dir on a small tmpfs
inside a mount namespace the test makes itself. Each ends in one line with its exit code, leaves
no partial file, and the run resumes exactly once the cause is gone. In-process:
tests/launch/test_failures.py."""
import json
import os
import shlex
import subprocess
import sys

import pytest

from tests import helpers
from tests.helpers import TINY

ENV = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")
RUN = [*TINY, "--steps_per_epoch=2", "--validation_steps=0", "--deterministic", "--seed=3"]


def only_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.startswith("train: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_out_of_memory_is_named_with_the_flags_that_lower_it(small_data, tmp_path):
    """TensorFlow's BFC allocator on the CPU with a 256 MB limit (oneDNN off: its own
    allocations bypass the limit and the process crashes instead) and a micro-batch of 64 at 224
    px: exit 4, the line names memory, the micro-batch and what lowers it; the input module is
    never scanned (that would name bad input)."""
    env = dict(ENV, TF_ENABLE_ONEDNN_OPTS="0", TF_CPU_ALLOCATOR_USE_BFC="true",
               TF_CPU_BFC_MEM_LIMIT_IN_MB="256")
    proc = helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path}", *RUN,
                              "--image_size=224", "--batch_size=64", "--epochs=1"],
                             env=env, check=False)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    line = only_line(proc.stderr)
    assert line.startswith("train: out of memory on CPU:0 (OOM when allocating tensor"), line
    assert "at a micro-batch of 64 images per worker" in line
    assert "--micro_batch_size=32 (the same --batch_size" in line and "--recompute" in line
    assert "bad input" not in line


# A tmpfs of `size` KB at `disk` in a mount namespace of the script's own; `run` trains with
# model_dir on it. A first run to step 2, then the disk filled up to `room` KB.
PRELUDE = """
set -u
mount -t tmpfs -o size={size}k tmpfs {disk}
run() {{ {python} -m launch.train --dataset_dir={data} --model_dir={disk}/run {args} "$@"; }}
run --epochs=1 > {out}/1.out 2> {out}/1.err; echo $? > {out}/1.rc
free=$(df --output=avail -k {disk} | tail -1)
dd if=/dev/zero of={disk}/filler bs=1k count=$((free - {room})) 2> /dev/null
"""


def on_a_small_disk(script, tmp_path, small_data, run_args, *, size, room):
    """PRELUDE then `script` (bash, formatted alike) in a mount namespace of its own: (disk,
    out, result), result(n) being the nth run's (exit code, stdout, stderr)."""
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    text = (PRELUDE + script).format(size=size, room=room, disk=disk, out=out, data=small_data,
                                     python=sys.executable,
                                     args=" ".join(map(shlex.quote, run_args)))
    subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", text],
                   env=ENV, cwd=helpers.REPO, timeout=600, check=True)

    def result(n):
        return (int((out / f"{n}.rc").read_text()), (out / f"{n}.out").read_text(),
                (out / f"{n}.err").read_text())
    return disk, out, result


# Room for the records, not for the next checkpoint.
SCRIPT = """
run --epochs=2 > {out}/2.out 2> {out}/2.err; echo $? > {out}/2.rc
ls -a {disk}/run {disk}/run/checkpoints > {out}/2.ls
cp {disk}/run/metrics.jsonl {out}/2.metrics
# Entirely full: the rerun is refused at its first write, which leaves nothing behind.
dd if=/dev/zero of={disk}/filler2 bs=1k 2> /dev/null
run --epochs=2 > {out}/3.out 2> {out}/3.err; echo $? > {out}/3.rc
ls -a {disk}/run > {out}/3.ls
rm {disk}/filler {disk}/filler2
run --epochs=2 > {out}/4.out 2> {out}/4.err; echo $? > {out}/4.rc
mount -o remount,ro {disk}
run --epochs=3 > {out}/5.out 2> {out}/5.err; echo $? > {out}/5.rc
cp -a {disk}/run {out}/run
"""


@pytest.mark.slow
def test_a_full_disk_keeps_whole_files_and_the_rerun_resumes_exactly(small_data, tmp_path):
    """On a 1.5 MB tmpfs: a run to step 2; the disk filled to 40 KB, so the step-4 checkpoint
    does not fit: exit 6, one line naming the checkpoint, no temporary directory or file left,
    metrics.jsonl whole; the disk entirely full: the rerun refused at its first write (exit 6),
    nothing half-written; space freed: the rerun resumes from step 2 and ends as a run that never
    failed; the disk read-only: refused before training (exit 6)."""
    disk, out, result = on_a_small_disk(SCRIPT, tmp_path, small_data, RUN, size=1536, room=40)
    code, stdout, stderr = result(1)
    assert code == 0, stdout + stderr
    code, stdout, stderr = result(2)
    assert code == 6, stdout + stderr
    line = only_line(stderr)
    assert line.startswith(f"train: could not write a checkpoint to {disk}/run/checkpoints: "
                           f"No space left on device; kept: the checkpoint of step 2"), line
    listing = (out / "2.ls").read_text().split()
    assert not [name for name in listing if "_temp" in name or name.endswith(".tmp")], listing
    records = [json.loads(line) for line in (out / "2.metrics").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4]  # every line whole
    code, stdout, stderr = result(3)
    assert code == 6, stdout + stderr
    line = only_line(stderr)
    assert "No space left on device" in line and "kept: the checkpoint of step 2" in line, line
    assert not [n for n in (out / "3.ls").read_text().split() if n.endswith(".tmp")]
    code, stdout, stderr = result(4)
    assert code == 0, stdout + stderr
    assert "at step 2" in stdout
    straight = tmp_path / "straight"
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={straight}", *RUN,
                       "--epochs=2"])
    helpers.assert_same_latest_checkpoints(out / "run", straight)
    assert [r["step"] for r in helpers.metrics(out / "run", "train")] == \
        [r["step"] for r in helpers.metrics(straight, "train")]
    code, stdout, stderr = result(5)
    assert code == 6, stdout + stderr
    line = only_line(stderr)
    assert line.startswith(f"train: cannot write in model_dir {disk}/run: Read-only file "
                           f"system"), line
    assert "step" not in stdout.replace("steps/epoch", "")


def test_an_export_to_a_full_disk_leaves_no_half_saved_model(small_data, tmp_path):
    """launch.export onto a 64 KB tmpfs: exit 6, one line naming the export, and nothing of the
    SavedModel left on that disk."""
    run = tmp_path / "run"
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={run}", *RUN, "--epochs=1"])
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} && {sys.executable} -m launch.export "
              f"--model_dir={run} --export_dir={disk}/saved; code=$?; ls -A {disk}; exit $code")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           script], env=ENV, cwd=helpers.REPO, timeout=300, capture_output=True,
                          text=True)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "", proc.stdout  # the disk holds nothing
    lines = [line for line in proc.stderr.splitlines() if line.startswith("export: ")]
    assert lines == [f"export: could not write the export to {disk}/saved: No space left on "
                     f"device"], proc.stderr[-3000:]


EVERY_WRITE = """
run --epochs=3 > {out}/2.out 2> {out}/2.err; echo $? > {out}/2.rc
find {disk}/run > {out}/2.ls
cat {disk}/run/best/best.json > {out}/2.best 2> /dev/null
rm {disk}/filler
run --epochs=3 > {out}/3.out 2> {out}/3.err; echo $? > {out}/3.rc
# The file system goes away under a running job (a lazy unmount: its path is gone).
run --epochs=400 > {out}/4.out 2> {out}/4.err & pid=$!
for i in $(seq 600); do grep -q '"step": 8' {disk}/run/metrics.jsonl 2> /dev/null && break
  sleep 0.2; done
umount -l {disk}
wait $pid; echo $? > {out}/4.rc
"""


@pytest.mark.slow
def test_every_write_of_the_run_fails_whole_and_a_vanished_disk_is_named(small_data, tmp_path):
    """With evaluation, the best checkpoint (--keep_best) and TensorBoard scalars every step,
    a disk filled to 24 KB: whichever write fails first ends the run in one line (exit 6), and
    nothing half-written is left anywhere in model_dir; space freed, the rerun finishes. Then
    the tmpfs is unmounted under a running job: one line naming the file it could not write,
    exit 6."""
    run = [*TINY, "--steps_per_epoch=2", "--validation_steps=2", "--keep_best=top1",
           "--save_summary_steps=1", "--deterministic", "--seed=3"]
    disk, out, result = on_a_small_disk(EVERY_WRITE, tmp_path, small_data, run, size=1536,
                                        room=24)
    assert result(1)[0] == 0, result(1)
    code, stdout, stderr = result(2)
    assert code == 6, stdout + stderr
    line = only_line(stderr)
    assert line.startswith("train: could not write ") and "No space left on device" in line, line
    left = (out / "2.ls").read_text().split()
    assert not [p for p in left if "_temp" in p or p.endswith((".tmp", ".partial"))], left
    best = [p for p in left if "/best/ckpt-" in p and p.endswith(".index")]
    assert len(best) == 1 and json.loads((out / "2.best").read_text())["checkpoint"] in best[0]
    code, stdout, stderr = result(3)
    assert code == 0 and "at step 2" in stdout, stdout + stderr
    code, stdout, stderr = result(4)
    assert code == 6, stdout + stderr
    line = only_line(stderr)
    assert line.startswith("train: could not write ") and f" {disk}/run/" in line and \
        f"No such file or directory; model_dir {disk}/run is gone" in line, line


# The real command with an assertion planted in the train step's graph: it fails at the 5th
# step, an error of no kind the command diagnoses, raised by TensorFlow inside training (where
# every TensorFlow error was once taken for bad input).
PLANTED_FAULT = """
import sys
import tensorflow as tf
from engine import losses
penalty, calls = losses.l2_penalty, []

def failing_at_the_fifth_step(variables, weight_decay):
    if not calls:
        with tf.init_scope():
            calls.append(tf.Variable(0, dtype=tf.int64, trainable=False))
    check = tf.debugging.assert_less(calls[0].assign_add(1), tf.constant(5, tf.int64),
                                     message="planted in-graph failure")
    with tf.control_dependencies([check]):
        return tf.identity(penalty(variables, weight_decay))

losses.l2_penalty = failing_at_the_fifth_step
from launch import train
sys.argv[0] = "train"
train.run()
"""


def test_an_undiagnosed_error_gives_its_first_line_keeps_the_checkpoint_and_logs_the_rest(
        small_data, tmp_path):
    """An in-graph assertion at step 5 (checkpoints every 2 steps): exit 7, one line with the
    error's first line, the path of error.log (the whole error, traceback included) and the
    checkpoint kept; no bad-example search; the rerun without the fault resumes from ckpt-4."""
    run = [f"--dataset_dir={small_data}", f"--model_dir={tmp_path}", *RUN, "--epochs=4"]
    proc = helpers.run_unchecked([sys.executable, "-c", PLANTED_FAULT, *run], 300, env=ENV)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    line = only_line(proc.stderr)
    assert line.startswith("train: stopped by an error this command does not diagnose: "
                           "InvalidArgumentError: assertion failed: [planted in-graph failure]"
                           ), line
    assert f"the whole error: {tmp_path}/error.log" in line and "ckpt-4" in line, line
    assert "bad input" not in line
    logged = (tmp_path / "error.log").read_text()
    assert "Traceback" in logged and "planted in-graph failure" in logged
    rerun = helpers.run_train(run)
    assert "at step 4" in rerun.stdout, rerun.stdout
