"""Elastic training under horovodrun's elastic mode (Gloo, launch/elastic.py): a worker
SIGKILLed, a host removed and added back mid-run. Each run ends as the uninterrupted run did
(weights, optimizer state and BN statistics to float summation order, training records to 4
decimals) and was dealt, at every step and slot, the micro-batch the uninterrupted run was dealt
(tests/launch/data_probe.py records them). The uninterrupted run is a 1-worker one: its 4 slots
make it the same run as on 2 workers (tests/launch/test_slots_cli.py), and it starts faster.
"localhost" and "127.0.0.1" are the two hosts, as in Horovod's own elastic tests;
`--network-interfaces lo` lets a job start on one of them."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import helpers
from tests.launch.test_slots_cli import ONE_THREAD, assert_same_run

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
PROBE = os.path.join(os.path.dirname(__file__), "data_probe.py")
SEED, SLOTS, STEPS = 7, 4, 12
# The slot recipe of test_slots_cli.py with the draws keyed by step and slot (dropout, mixup
# and CutMix) and without its slow parts (RandAugment, precise BN): 12 steps in 2 epochs.
RUN = [*helpers.TINY, "--batch_size=16", "--micro_batch_size=4", "--initial_lr=0.02",
       "--dropout_rate=0.2", "--mixup_alpha=0.2", "--cutmix_alpha=1.0", "--deterministic",
       f"--seed={SEED}", "--steps_per_epoch=6", "--epochs=2", "--log_steps=2", *ONE_THREAD,
       "--stop_within=1"]  # stop checks, and so commits, every few steps
BOTH_HOSTS, ONE_HOST = "localhost:1\n127.0.0.1:1\n", "localhost:1\n"
# Each batch waits this long in the probe: the run then lasts long enough for a change of
# workers to land mid-run, and computes the same.
DELAY = "0.2"

pytestmark = pytest.mark.slow


def environment(probe_dir, delay=DELAY):
    return dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2",
                DATA_PROBE_DIR=str(probe_dir), DATA_PROBE_SECONDS=delay)


def train_args(small_data, model_dir):
    return [sys.executable, PROBE, f"--dataset_dir={small_data}", f"--model_dir={model_dir}",
            *RUN]


def start_elastic(small_data, tmp_path, hosts, *, workers, extra=(), delay=DELAY):
    """horovodrun in elastic mode (1 to 2 workers) on the hosts that tmp_path/hosts lists."""
    (tmp_path / "hosts").write_text(hosts)
    script = tmp_path / "discover.sh"
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'hosts'}\n")
    script.chmod(0o755)
    (tmp_path / "probe").mkdir()
    cmd = [HOROVODRUN, "-np", str(workers), "--min-np", "1", "--max-np", "2",
           "--host-discovery-script", str(script), "--gloo", "--network-interfaces", "lo",
           *extra, *train_args(small_data, tmp_path / "run")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment(tmp_path / "probe", delay), cwd=helpers.REPO,
                            start_new_session=True)


def logged_step(model_dir):
    try:
        with open(os.path.join(model_dir, "metrics.jsonl")) as f:
            return max([json.loads(line).get("step", 0) for line in f if line.strip()],
                       default=0)
    except (OSError, ValueError):
        return 0


def wait_for_step(proc, model_dir, step, timeout=180):
    deadline = time.time() + timeout
    while logged_step(model_dir) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the run logged no step in time"
        time.sleep(0.1)


def worker_pid(model_dir, required=True, **launched_with):
    """The pid of the training worker that Horovod started with these environment values
    (e.g. HOROVOD_RANK="0"; None if there is none and not `required`)."""
    found = subprocess.run(["pgrep", "-f", "--", f"--model_dir={model_dir}"],
                           capture_output=True, text=True).stdout.split()
    wanted = {f"{k}={v}" for k, v in launched_with.items()}
    for pid in found:
        try:
            with open(f"/proc/{pid}/cmdline") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/environ") as f:
                env = set(f.read().split("\0"))
        except OSError:
            continue
        if "data_probe.py" in cmdline and "horovodrun" not in cmdline and wanted <= env:
            return int(pid)
    assert not required, f"no worker started with {launched_with} among {found}"
    return None


def finish(proc, timeout=300):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, out, err


def dealt(probe_dir, *, last_step=STEPS):
    """{(seed, step, slot): digest} of what every worker was dealt up to `last_step`;
    AssertionError if one step and slot of a stream was dealt two different micro-batches."""
    seen = {}
    for name in os.listdir(probe_dir):
        with open(os.path.join(probe_dir, name)) as f:
            for line in f:
                seed, step, slot, digest = line.split()
                key = (int(seed), int(step), int(slot))
                if key[1] <= last_step:
                    assert seen.setdefault(key, digest) == digest, f"{key} dealt twice"
    return seen


@pytest.fixture(scope="module")
def uninterrupted(small_data, tmp_path_factory):
    """The reference: the same run on 1 worker, not elastic; (model_dir, what it was dealt)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    (root / "probe").mkdir()
    helpers.run_checked(train_args(small_data, root / "run"), 600,
                        env=dict(environment(root / "probe"), DATA_PROBE_SECONDS="0"))
    reference = dealt(root / "probe")
    # Every step's slots were dealt, and each slot's stream once per step.
    assert {(step, slot) for seed, step, slot in reference if seed == SEED} == \
        {(step, slot) for step in range(1, STEPS + 1) for slot in range(SLOTS)}
    return root / "run", reference


def assert_same_as(uninterrupted, tmp_path):
    reference_dir, reference = uninterrupted
    assert_same_run(reference_dir, tmp_path / "run")
    assert dealt(tmp_path / "probe") == reference
    assert [r["step"] for r in helpers.metrics(tmp_path / "run", "validation")] == [6, 12]


def test_a_killed_worker_leaves_and_the_run_goes_on_as_it_would_have(uninterrupted, small_data,
                                                                     tmp_path):
    """SIGKILL of rank 0 (the chief: the survivor takes over the logs, checkpoints and the
    lock) mid-epoch: the job goes on with 1 worker and exits 0."""
    proc = start_elastic(small_data, tmp_path, BOTH_HOSTS, workers=2)
    wait_for_step(proc, tmp_path / "run", 2)
    os.kill(worker_pid(tmp_path / "run", HOROVOD_RANK="0"), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code == 0, err[-3000:]
    assert "elastic: a collective failed (" in out, out
    assert "; 1 worker now: the run's 4 micro-batch slots run 4 per worker" in out, out
    assert_same_as(uninterrupted, tmp_path)


def test_a_removed_host_leaves_gracefully_and_joins_again(uninterrupted, small_data, tmp_path):
    """The discovery script drops 127.0.0.1 (2 -> 1 workers, no collective fails), then lists
    it again (1 -> 2: a new worker starts there, takes rank 0's state and half the slots).
    Slower steps here: the host comes back once the removed worker has gone, and the run must
    not end before the discovery script's next call sees it."""
    proc = start_elastic(small_data, tmp_path, BOTH_HOSTS, workers=2, delay="0.7")
    wait_for_step(proc, tmp_path / "run", 2)
    (tmp_path / "hosts").write_text(ONE_HOST)
    deadline = time.time() + 120
    while worker_pid(tmp_path / "run", required=False,
                     HOROVOD_HOSTNAME="127.0.0.1") is not None:  # the removed host's worker
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    (tmp_path / "hosts").write_text(BOTH_HOSTS)
    code, out, err = finish(proc)
    assert code == 0, err[-3000:]
    assert "a collective failed" not in out, out
    # The removed host's worker ends in Horovod's own line, without Python's stack dump.
    assert "127.0.0.1[0] has been removed from elastic job" in err and \
        "Fatal Python error" not in err, err[-3000:]
    removed = ("elastic: the hosts changed; 1 worker now: the run's 4 micro-batch slots run 4 "
               "per worker")
    added = ("elastic: the hosts changed; 2 workers now: the run's 4 micro-batch slots run 2 "
             "per worker")
    assert removed in out and added in out.split(removed, 1)[-1], out
    assert_same_as(uninterrupted, tmp_path)


def test_reset_limit_reached_ends_the_job_in_one_line_and_the_checkpoint_resumes(small_data,
                                                                                tmp_path):
    """--reset-limit 0: the first worker lost ends the job, non-zero, with one line of ours
    naming the checkpoints and no traceback from a worker; the same command without elastic
    mode (on 1 worker: the slots allow it) resumes from the last checkpoint and finishes the
    run."""
    proc = start_elastic(small_data, tmp_path, BOTH_HOSTS, workers=2,
                         extra=["--reset-limit", "0"])
    deadline = time.time() + 180
    while helpers.latest_checkpoint(tmp_path / "run") is None:  # the epoch end's, at step 6
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    os.kill(worker_pid(tmp_path / "run", HOROVOD_RANK="1"), signal.SIGKILL)
    code, out, err = finish(proc)
    assert code != 0
    lines = (out + err).splitlines()
    ours = [line for line in lines if "train: elastic:" in line]
    assert len(ours) == 1, out + err
    assert "the launcher ended the job while the workers met again" in ours[0], ours
    assert f"{tmp_path / 'run'}/checkpoints resumes the run" in ours[0], ours
    workers = [line for line in lines if line.startswith(("[0]", "[1]"))]
    assert not [line for line in workers if "Traceback" in line], err
    last = helpers.latest_checkpoint(tmp_path / "run")
    stopped = int(last.rsplit("-", 1)[1])
    assert 6 <= stopped < STEPS, last
    resumed = helpers.run_checked(train_args(small_data, tmp_path / "run"), 600,
                                  env=dict(environment(tmp_path / "probe"),
                                           DATA_PROBE_SECONDS="0"))
    assert f"resumed from {last} at step {stopped}" in resumed.stdout, resumed.stdout
    assert helpers.latest_checkpoint(tmp_path / "run").endswith(f"ckpt-{STEPS}")
