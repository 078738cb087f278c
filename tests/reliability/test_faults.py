"""Faults a long run meets, driven through the real command line. Each test says what it
checks; none may lose more than the work since the last checkpoint."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.helpers import TINY

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
ENV = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")


def args(small_data, model_dir, *extra):
    return [f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY, *extra]


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, cwd=helpers.REPO, start_new_session=True)


def wait_for(predicate, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def checkpoints(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return [] if state is None else list(state.all_model_checkpoint_paths)


def assert_metrics_complete(model_dir, steps_per_epoch, epochs):
    train = [r["step"] for r in helpers.metrics(model_dir, "train")]
    assert train == sorted(set(train)) and train[-1] == steps_per_epoch * epochs
    validation = [r["step"] for r in helpers.metrics(model_dir, "validation")]
    assert validation == [steps_per_epoch * (e + 1) for e in range(epochs)]


def test_kill_9_mid_epoch_then_rerun_resumes_and_keeps_metrics_whole(small_data, tmp_path):
    """kill -9 after a mid-epoch checkpoint; the same command again finishes the run with every
    epoch's metrics exactly once."""
    run = args(small_data, tmp_path, "--epochs=3", "--steps_per_epoch=6", "--checkpoint_steps=2",
               "--log_steps=1")
    proc = start(helpers.train_command(*run))
    wait_for(lambda: any(p.endswith(("ckpt-8", "ckpt-10")) for p in checkpoints(tmp_path)))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed_at = int(checkpoints(tmp_path)[-1].rsplit("-", 1)[1])
    assert killed_at < 18
    out = helpers.run_train(run)
    assert f"at step {killed_at}" in out.stdout
    assert_metrics_complete(tmp_path, 6, 3)


def test_sigterm_checkpoints_and_exits_0_then_rerun_continues(small_data, tmp_path):
    """Pre-emption: SIGTERM ends the current step, writes a checkpoint, exits 0."""
    run = args(small_data, tmp_path, "--epochs=40", "--steps_per_epoch=5",
               "--validation_steps=0")
    proc = start(helpers.train_command(*run))
    wait_for(lambda: os.path.exists(tmp_path / "metrics.jsonl"))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stopped = int(out.split("stopped by a signal after step ")[1].split(";")[0])
    assert checkpoints(tmp_path)[-1].endswith(f"ckpt-{stopped}")
    epochs = stopped // 5 + 1
    rerun = helpers.run_train(args(small_data, tmp_path, f"--epochs={epochs}",
                                   "--steps_per_epoch=5", "--validation_steps=0"))
    assert f"at step {stopped}" in rerun.stdout


# A net whose steps take about 2 s on a 2-core CPU (its own "pace:" line says how long here).
LONG_STEPS = ["--model=densenet", "--blocks=3,3", "--growth_rate=32", "--stem_filters=64",
              "--image_size=352", "--batch_size=32", "--dtype=fp32", "--warmup_epochs=0",
              "--shuffle_buffer=16", "--log_steps=50", "--epochs=1", "--steps_per_epoch=10",
              "--validation_steps=0", "--seed=5", "--deterministic", "--stop_within=10"]


@pytest.mark.slow
@pytest.mark.serial  # it times the stop
def test_sigterm_ends_long_steps_within_stop_within_and_the_resumed_run_is_exact(small_data,
                                                                                  tmp_path):
    """Steps of about 2 s and logs every 50 (100 s apart): SIGTERM once the pace is measured
    ends the run with a checkpoint and exit 0 within 15 s (--stop_within=10, plus a step),
    without waiting for the log; the same command then finishes the run with the weights,
    optimizer state and BN statistics of an uninterrupted run."""
    def command(model_dir):
        return helpers.train_command(f"--dataset_dir={small_data}", f"--model_dir={model_dir}",
                                     *LONG_STEPS)
    proc = start(command(tmp_path / "stopped"))
    for line in proc.stdout:
        if line.startswith("pace:"):
            break
    else:
        raise AssertionError(f"no pace line: {proc.communicate()}")
    asked = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    took = time.time() - asked
    assert proc.returncode == 0, err
    stopped = int(out.split("stopped by a signal after step ")[1].split(";")[0])
    assert took < 15, f"{took:.1f} s after SIGTERM (stopped at step {stopped}); {line}"
    assert 4 <= stopped < 10
    assert checkpoints(tmp_path / "stopped")[-1].endswith(f"ckpt-{stopped}")
    assert not os.path.exists(tmp_path / "stopped" / "metrics.jsonl")  # no log was due
    resumed = helpers.run_checked(command(tmp_path / "stopped"), 600)
    assert f"at step {stopped}" in resumed.stdout
    helpers.run_checked(command(tmp_path / "straight"), 600)
    helpers.assert_same_latest_checkpoints(tmp_path / "stopped", tmp_path / "straight")


@pytest.mark.slow
@pytest.mark.serial  # it times the stop
def test_one_horovod_worker_killed_ends_the_job_then_rerun_resumes(small_data, tmp_path):
    """kill -9 of one worker of horovodrun -np 2: the job exits non-zero within 60 s, the
    survivor names a lost worker (not bad input), no process is left behind; the rerun resumes
    from the last checkpoint."""
    run = args(small_data, tmp_path, "--epochs=200", "--steps_per_epoch=2",
               "--validation_steps=0")
    proc = start([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                  *helpers.train_command(*run)])
    wait_for(lambda: len(checkpoints(tmp_path)) >= 1)
    workers = subprocess.run(["pgrep", "-f", "--", f"--model_dir={tmp_path}"], capture_output=True,
                             text=True).stdout.split()
    workers = [int(p) for p in workers if int(p) != proc.pid]
    trainers = [p for p in workers if "launch.train" in open(f"/proc/{p}/cmdline").read()
                and "horovodrun" not in open(f"/proc/{p}/cmdline").read()]
    assert len(trainers) >= 2
    killed = time.time()
    os.kill(trainers[-1], signal.SIGKILL)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode != 0
    assert time.time() - killed < 60
    assert re.search(rf"train: a worker stopped answering: rank \d \(process {trainers[-1]} on ",
                     err) \
        and "a collective failed (Horovod has been shut down" in err \
        and "run the same command again to resume" in err, err[-3000:]
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", "--", f"--model_dir={tmp_path}"], capture_output=True,
                          text=True).stdout.split()
    assert not left, f"processes left behind: {left}"
    last = int(checkpoints(tmp_path)[-1].rsplit("-", 1)[1])
    epochs = last // 2 + 1
    rerun = helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                                 *helpers.train_command(*args(
                                     small_data, tmp_path, f"--epochs={epochs}",
                                     "--steps_per_epoch=2", "--validation_steps=0"))], 300)
    assert f"at step {last}" in rerun.stdout


def test_corrupt_newest_checkpoint_falls_back_to_the_previous(small_data, tmp_path):
    """The newest checkpoint's data truncated: the run says so, resumes from the previous one;
    with no checkpoint usable it refuses unless --allow_fresh_start."""
    helpers.run_train(args(small_data, tmp_path, "--epochs=2", "--steps_per_epoch=2",
                           "--validation_steps=0"))
    paths = checkpoints(tmp_path)
    assert [p.rsplit("-", 1)[1] for p in paths] == ["2", "4"]
    data = [f for f in os.listdir(tmp_path / "checkpoints") if f.startswith("ckpt-4.data")][0]
    with open(tmp_path / "checkpoints" / data, "r+b") as f:
        f.truncate(100)
    out = helpers.run_train(args(small_data, tmp_path, "--epochs=3", "--steps_per_epoch=2",
                                 "--validation_steps=0"))
    assert "ckpt-4 cannot be restored" in out.stdout and "fell back to" in out.stdout
    assert "at step 2" in out.stdout

    for path in checkpoints(tmp_path):
        for f in os.listdir(tmp_path / "checkpoints"):
            if f.startswith(os.path.basename(path) + ".data"):
                with open(tmp_path / "checkpoints" / f, "r+b") as handle:
                    handle.truncate(10)
    refused = helpers.run_train(args(small_data, tmp_path, "--epochs=4", "--steps_per_epoch=2",
                                     "--validation_steps=0"), check=False)
    assert refused.returncode == 1
    assert "no usable checkpoint" in refused.stderr and "--allow_fresh_start" in refused.stderr
    fresh = helpers.run_train(args(small_data, tmp_path, "--epochs=1", "--steps_per_epoch=2",
                                   "--validation_steps=0", "--allow_fresh_start"))
    assert "resumed from" not in fresh.stdout


def test_disk_full_while_checkpointing_is_a_clear_error_and_the_previous_checkpoint_loads(
        small_data, tmp_path):
    """A file-size limit (as a full disk) makes the checkpoint write fail: one clear line, exit
    6 (the disk's), no temporary directory left, and the previous checkpoint still restores."""
    import resource
    helpers.run_train(args(small_data, tmp_path, "--epochs=1", "--steps_per_epoch=2",
                           "--validation_steps=0"))
    before = checkpoints(tmp_path)

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG), do not die
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    proc = subprocess.run(helpers.train_command(*args(
        small_data, tmp_path, "--epochs=2", "--steps_per_epoch=2", "--validation_steps=0")),
        capture_output=True, text=True, env=ENV, cwd=helpers.REPO, timeout=300,
        preexec_fn=limit_file_size)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"train: could not write a checkpoint to {tmp_path}/checkpoints: "
                           f"File too large; kept: the checkpoint of step 2"), last
    assert checkpoints(tmp_path) == before
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if "_temp" in n]
    values = helpers.checkpoint_values(before[-1])
    assert values  # reads back whole


def test_second_run_on_the_same_model_dir_is_refused(small_data, tmp_path):
    """Two runs on one model_dir: the second refuses, naming the first, and writes nothing."""
    first = start(helpers.train_command(*args(small_data, tmp_path, "--epochs=100",
                                              "--steps_per_epoch=5", "--validation_steps=0")))
    try:
        wait_for(lambda: os.path.exists(tmp_path / "flags.txt"))
        flags_before = (tmp_path / "flags.txt").read_text()
        second = helpers.run_train(args(small_data, tmp_path, "--epochs=1", "--seed=99"),
                                   check=False)
        assert second.returncode == 1
        assert f"model_dir {tmp_path} is in use by pid {first.pid}" in second.stderr
        assert (tmp_path / "flags.txt").read_text() == flags_before
    finally:
        first.kill()
        first.wait()


def test_nan_loss_stops_at_the_step_and_keeps_the_last_good_checkpoint(small_data, tmp_path):
    """An exploding learning rate: the run stops naming the step, exit 1; the last good
    checkpoint is untouched and holds finite weights."""
    helpers.run_train(args(small_data, tmp_path, "--epochs=1", "--steps_per_epoch=3",
                           "--validation_steps=0"))
    good = checkpoints(tmp_path)[-1]
    good_values = helpers.checkpoint_values(good)
    proc = helpers.run_train(args(small_data, tmp_path, "--epochs=3", "--steps_per_epoch=3",
                                  "--validation_steps=0", "--initial_lr=1e30"), check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train: loss or gradients became NaN or Inf at step "), last
    step = int(last.split("at step ")[1].split(";")[0])
    assert 4 <= step <= 9
    assert checkpoints(tmp_path)[-1] == good
    after = helpers.checkpoint_values(good)
    for key, value in good_values.items():
        np.testing.assert_array_equal(after[key], value)
        if value.dtype.kind == "f":
            assert np.isfinite(value).all()


def trainer_pids(model_dir, launcher_pid):
    found = subprocess.run(["pgrep", "-f", "--", f"--model_dir={model_dir}"],
                           capture_output=True, text=True).stdout.split()
    out = []
    for pid in map(int, found):
        try:
            cmdline = open(f"/proc/{pid}/cmdline").read()
            environ = open(f"/proc/{pid}/environ").read()
        except OSError:
            continue
        if pid != launcher_pid and "launch.train" in cmdline and "horovodrun" not in cmdline:
            rank = [v for v in environ.split("\0") if v.startswith("HOROVOD_RANK=")]
            if rank:
                out.append((int(rank[0].split("=")[1]), pid))
    return dict(out)


@pytest.mark.slow
@pytest.mark.serial  # it times the stop
def test_a_stopped_horovod_worker_ends_the_job_then_rerun_resumes(small_data, tmp_path):
    """kill -STOP of rank 1 (a hung worker): rank 0's watchdog ends it within --stall_timeout +
    60 s with one line, the launcher ends, the last checkpoint still loads, and the same
    command resumes from it."""
    run = args(small_data, tmp_path, "--epochs=60", "--steps_per_epoch=4",
               "--validation_steps=0", "--stall_timeout=10", "--stall_timeout_long=120")
    command = [HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
               *helpers.train_command(*run)]
    proc = start(command)
    # The second epoch's checkpoint: by then the first call of several steps (after the StepTimer's
    # single timed steps) has been traced, a wait with the long allowance.
    wait_for(lambda: len(checkpoints(tmp_path)) >= 2)
    ranks = trainer_pids(tmp_path, proc.pid)
    assert sorted(ranks) == [0, 1], ranks
    stopped = time.time()
    os.kill(ranks[1], signal.SIGSTOP)
    try:
        out, err = proc.communicate(timeout=10 + 60 + 30)
        ended = time.time() - stopped
    finally:
        for pid in ranks.values():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert proc.returncode != 0
    assert ended < 10 + 60, ended
    assert "train: rank 0 stalled: no progress for 10 s after step" in err, err[-3000:]
    time.sleep(2)
    left = trainer_pids(tmp_path, proc.pid)
    for pid in left.values():
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
    last = checkpoints(tmp_path)[-1]
    assert helpers.checkpoint_values(last)  # loads: not corrupted
    at = int(last.rsplit("-", 1)[1])
    resumed = start(command)
    wait_for(lambda: int(checkpoints(tmp_path)[-1].rsplit("-", 1)[1]) > at, timeout=240)
    resumed.send_signal(signal.SIGTERM)
    out, err = resumed.communicate(timeout=120)
    assert f"at step {at}" in out, out + err
