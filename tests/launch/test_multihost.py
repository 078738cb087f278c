"""Two hosts over ssh, without a shared file system: horovodrun -H 127.0.0.2:1,127.0.0.3:1 -p
PORT -i KEY really logs into both sshd daemons (tests/launch/ssh_hosts.py), host B's model_dir
is its own empty disk, and rank 0 (host A) alone reads and writes the run's files. A run stopped
after epoch 1 and resumed on the same hosts equals the uninterrupted one, and both equal one
host running both micro-batch slots."""
import json
import os
import signal
import subprocess
import sys
import time
from importlib.metadata import version as metadata_version

import pytest

from launch.preflight import roll_call
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


def preflight_command(hosts, args, addresses=ssh_hosts.ADDRESSES):
    daemons, _ = hosts
    return [HOROVODRUN, "-np", "2", "-H", ",".join(f"{a}:1" for a in addresses),
            "-p", str(daemons.port), "-i", daemons.key, "--gloo", "--network-interface", "lo",
            sys.executable, "-m", "launch.preflight", *args]


def preflight_over_ssh(hosts, args, env, addresses=ssh_hosts.ADDRESSES):
    return helpers.run_unchecked(preflight_command(hosts, args, addresses), 600, env=env)


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


def test_preflight_names_a_small_model_dir_where_rank_0_writes_and_memory_short_on_the_other(
        hosts, small_data, tmp_path):
    """Rank 0 on host B (`-H 127.0.0.3:1,127.0.0.2:1`): it writes, and its model_dir is a
    300 KB tmpfs in host B's namespace. Host A (rank 1) has TensorFlow's BFC allocator limited
    to 256 MB (a sitecustomize on its disk alone, for its workers alone: less memory there). At
    224 px the micro-batch of 64 fits host B and not host A, which names a smaller one that
    fits (its input pipeline may run out of memory too). Exactly those blockers, each with its
    host, rank and check; exit 1."""
    daemons, private = hosts
    data, shadow, disk = private / "short_data", private / "short_shadow", private / "short_disk"
    copy = f"rm -rf {data} && cp -r {small_data} {data}"
    subprocess.run(["bash", "-c", copy], check=True)
    small_disk = f"{copy} && mkdir -p {disk} && mount -t tmpfs -o size=300k tmpfs {disk}"
    assert daemons.ssh("127.0.0.3", small_disk).returncode == 0
    shadow.mkdir()  # host A's disk: host B sees its own empty tmpfs at this path
    (shadow / "sitecustomize.py").write_text(
        "import os\n"
        "if 'HOROVOD_RANK' in os.environ:  # a worker, not horovodrun itself\n"
        "    os.environ.update(TF_ENABLE_ONEDNN_OPTS='0', TF_CPU_ALLOCATOR_USE_BFC='true',\n"
        "                      TF_CPU_BFC_MEM_LIMIT_IN_MB='256')\n")
    env = dict(os.environ, PYTHONPATH=f"{helpers.REPO}:{shadow}", TF_CPP_MIN_LOG_LEVEL="2")
    args = [f"--dataset_dir={data}", *RUN, "--epochs=1", "--preflight_input_seconds=1",
            "--image_size=224", "--batch_size=128", "--micro_batch_size=64",
            f"--model_dir={disk}/run"]
    proc = preflight_over_ssh(hosts, args, env, addresses=reversed(ssh_hosts.ADDRESSES))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    blockers = sorted(line.split("<stdout>:", 1)[1] for line in proc.stdout.splitlines()
                      if "<stdout>:blocker:" in line)
    memory, model_dir, *speed = blockers
    # Host A's input pipeline (batches of 64 images at 224 px, prefetched) may run out of its
    # memory too, depending on what the step probe left in the allocator.
    assert len(speed) <= 1 and all(line.startswith(
        "blocker: speed: 127.0.0.2 (rank 1): input failed: ResourceExhaustedError")
        for line in speed), proc.stdout
    assert memory.startswith("blocker: memory: 127.0.0.2 (rank 1): a micro-batch of 64 does "
                             "not fit"), proc.stdout
    assert model_dir.startswith(f"blocker: model_dir: 127.0.0.3 (rank 0): {disk} has "), \
        proc.stdout
    assert "lower --keep_checkpoints" in model_dir
    report = json.loads(daemons.ssh("127.0.0.3", f"cat {disk}/run/preflight.json").stdout)
    on_a = report["workers"][1]["step"]
    assert report["workers"][1]["identity"]["host"] == "127.0.0.2"
    assert 1 <= on_a["micro_batch"] < 64 and on_a["too_large"][0]["micro_batch"] == 64
    assert f"--micro_batch_size={on_a['micro_batch']} with the same --batch_size" in memory
    assert report["workers"][0]["step"]["fits"], report["workers"][0]["step"]


def test_preflight_names_a_worker_that_froze_by_rank_host_and_process(hosts, small_data):
    """Host B's worker is stopped (SIGSTOP: a host that hangs) once the roll call shows it at
    its step probe. Rank 0 waits at the next collective, and within the roll call's silence
    limit names rank 1, its host, its process and where it stopped; exit 3, no hang."""
    daemons, private = hosts
    data = private / "frozen_data"
    copy = f"rm -rf {data} && cp -r {small_data} {data}"
    subprocess.run(["bash", "-c", copy], check=True)
    assert daemons.ssh("127.0.0.3", copy).returncode == 0
    env = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")
    args = [f"--dataset_dir={data}", *RUN, "--epochs=1", "--preflight_input_seconds=1",
            f"--model_dir={private / 'frozen_run'}", "--preflight_check_seconds=30"]
    launched = subprocess.Popen(preflight_command(hosts, args), env=env, cwd=helpers.REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frozen = None
    try:
        pid, environ = ssh_hosts.wait_for_worker(launched, module="launch.preflight", rank=1)
        store = roll_call.Store(environ["HOROVOD_GLOO_RENDEZVOUS_ADDR"],
                                environ["HOROVOD_GLOO_RENDEZVOUS_PORT"])
        while (store.get(1) or {}).get("stage") != "step":
            assert launched.poll() is None, launched.communicate()
            time.sleep(0.2)
        os.kill(pid, signal.SIGSTOP)
        frozen = pid
        started = time.monotonic()
        out, err = launched.communicate(timeout=180)
        waited = time.monotonic() - started
    finally:
        if frozen:
            os.kill(frozen, signal.SIGKILL)
        if launched.poll() is None:
            launched.kill()
    lines = [line for line in err.splitlines() if "preflight: " in line]
    assert len(lines) == 1 and lines[0].startswith(
        "[0]<stderr>:preflight: rank 0 (127.0.0.2) waited "), err
    silent = lines[0].split("has not answered for at least ")[-1].split()[0]
    assert lines[0].endswith(f": rank 1 (127.0.0.3, process {frozen}) has not answered for at "
                             f"least {silent} s, last at step"), lines[0]
    assert int(silent) >= roll_call.SILENT_SECONDS
    # Named within rank 0's own probes after the freeze (each under the limit) and the silence.
    assert waited < 2 * 30 + roll_call.SILENT_SECONDS + 30, waited
    # (horovodrun itself ends with a traceback of its own when a worker exits non-zero)
    workers_said = [line for line in err.splitlines() if line.startswith(("[0]", "[1]"))]
    assert launched.returncode != 0 and not any("Traceback" in said for said in workers_said), \
        err
