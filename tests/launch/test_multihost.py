"""Two hosts over ssh, without a shared file system: horovodrun -H 127.0.0.2:1,127.0.0.3:1 -p
PORT -i KEY really logs into both sshd daemons (tests/launch/ssh_hosts.py), host B's model_dir
is its own empty disk, and rank 0 (host A) alone reads and writes the run's files. A run stopped
after epoch 1 and resumed on the same hosts equals the uninterrupted one, and both equal one
host running both micro-batch slots."""
import json
import os
import subprocess
import sys
from importlib.metadata import version as metadata_version

import pytest

from tests import helpers
from tests.launch import ssh_hosts
from tests.launch.test_slots_cli import assert_same_run

pytestmark = pytest.mark.slow
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
# 2 slots of 8 examples: one per host, or both on one. One compute thread per process: the
# "hosts" share this machine's cores (a host's own share would be sized to its cores), and
# two threads per worker on two cores move the float summation order enough that this tiny
# net's BN offsets part by 1e-3 within 6 steps (`--intra_op_threads=2` shows it).
RUN = [*helpers.TINY, "--intra_op_threads=1", "--batch_size=16", "--micro_batch_size=8",
       "--initial_lr=0.02",
       "--dropout_rate=0.2", "--mixup_alpha=0.2", "--deterministic", "--seed=4",
       "--steps_per_epoch=3", "--validation_steps=1", "--log_steps=1"]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssh_hosts")
    model_dirs = tmp_path_factory.mktemp("model_dirs")  # host B: an empty tmpfs here
    daemons = ssh_hosts.SshHosts(root, model_dirs)
    yield daemons, model_dirs
    daemons.stop()


def over_ssh(hosts, args):
    daemons, _ = hosts
    return helpers.run_checked([HOROVODRUN, "-np", "2", "-H",
                                ",".join(f"{a}:1" for a in ssh_hosts.ADDRESSES),
                                "-p", str(daemons.port), "-i", daemons.key, "--gloo",
                                "--network-interface", "lo", *helpers.train_command(*args)], 600)


def test_two_hosts_resume_exactly_and_equal_one_host(hosts, small_data, tmp_path):
    daemons, model_dirs = hosts
    straight, stopped = model_dirs / "straight", model_dirs / "stopped"
    common = [f"--dataset_dir={small_data}", *RUN]
    out = over_ssh(hosts, [*common, f"--model_dir={straight}", "--epochs=2"]).stdout
    assert "horovod (gloo, 2 workers)" in out and "2 micro-batch slots (1 per worker)" in out
    for name in ("a", "b"):  # both ranks were started through their host's sshd
        assert "Accepted publickey for root" in daemons.log(name), daemons.log(name)
        assert "Starting session: command" in daemons.log(name), daemons.log(name)
    assert os.path.isdir(straight / "checkpoints")

    over_ssh(hosts, [*common, f"--model_dir={stopped}", "--epochs=1"])
    resumed = over_ssh(hosts, [*common, f"--model_dir={stopped}", "--epochs=2"]).stdout
    assert "resumed from" in resumed and "at step 3, epoch 1" in resumed, resumed
    assert_same_run(straight, stopped)
    # Host B's disk: rank 1 wrote nothing there, and host A's files are not on it.
    seen_by_b = daemons.ssh("127.0.0.3", f"ls -A {model_dirs}")
    assert seen_by_b.returncode == 0 and seen_by_b.stdout == "", seen_by_b
    assert helpers.metrics(straight, "validation") == helpers.metrics(stopped, "validation")

    one_host = tmp_path / "one_host"
    out = helpers.run_train([*common, f"--model_dir={one_host}", "--epochs=2"]).stdout
    assert "2 micro-batch slots (2 per worker)" in out
    assert_same_run(straight, one_host)


def preflight_over_ssh(hosts, args, env):
    daemons, _ = hosts
    return helpers.run_unchecked([HOROVODRUN, "-np", "2", "-H",
                                  ",".join(f"{a}:1" for a in ssh_hosts.ADDRESSES),
                                  "-p", str(daemons.port), "-i", daemons.key, "--gloo",
                                  "--network-interface", "lo", sys.executable, "-m",
                                  "launch.preflight", *args], 600, env=env)


def test_preflight_passes_a_clean_pair_and_names_host_b_s_missing_shard_and_package(
        hosts, small_data, tmp_path):
    """The same data at a path each host has on its own disk (host B's is its private tmpfs):
    a clean pair is ready. Then host B loses a training shard and gets another absl-py (a
    package's metadata early on its PYTHONPATH, on its private disk only): exit 1, each named
    with host B, its rank and the check; host A has neither verdict."""
    daemons, private = hosts
    data, shadow = private / "preflight_data", private / "preflight_shadow"
    copy = f"rm -rf {data} && cp -r {small_data} {data}"
    subprocess.run(["bash", "-c", copy], check=True)
    assert daemons.ssh("127.0.0.3", copy).returncode == 0
    env = dict(os.environ, PYTHONPATH=f"{helpers.REPO}:{shadow}", TF_CPP_MIN_LOG_LEVEL="2")
    args = [f"--dataset_dir={data}", *RUN, "--epochs=1", "--preflight_input_seconds=1"]

    clean = preflight_over_ssh(hosts, [*args, f"--model_dir={tmp_path / 'clean'}"], env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ready: no blocker on any host" in clean.stdout
    rows = [line.split("<stdout>:", 1)[1].split() for line in clean.stdout.splitlines()
            if line.startswith("[0]<stdout>:") and line.split("<stdout>:", 1)[1][:1].isdigit()]
    assert [row[:2] for row in rows] == [["0", "127.0.0.2"], ["1", "127.0.0.3"]], clean.stdout
    assert all(row[2:] == ["ok"] * 6 for row in rows), clean.stdout

    shard = sorted(os.listdir(data / "train"))[1]
    metadata = shadow / "absl_py-0.0.1.dist-info"
    plant = (f"rm {data}/train/{shard} && mkdir -p {metadata} && printf 'Metadata-Version: "
             f"2.1\\nName: absl-py\\nVersion: 0.0.1\\n' > {metadata}/METADATA")
    assert daemons.ssh("127.0.0.3", plant).returncode == 0
    faulty = preflight_over_ssh(hosts, [*args, f"--model_dir={tmp_path / 'faulty'}"], env)
    assert faulty.returncode == 1, faulty.stdout + faulty.stderr
    blockers = [line.split("<stdout>:", 1)[1] for line in faulty.stdout.splitlines()
                if "<stdout>:blocker:" in line]
    assert blockers == [
        "blocker: software: 127.0.0.3 (rank 1): absl-py 0.0.1 (rank 0's host: "
        f"{metadata_version('absl-py')})",
        f"blocker: data: 127.0.0.3 (rank 1): dataset_dir differs from rank 0's host: "
        f"missing: train/{shard}"], faulty.stdout
    report = json.loads((tmp_path / "faulty" / "preflight.json").read_text())
    assert not report["ready"] and len(report["workers"]) == 2
