"""The run fits the machine it is given: native bf16 detected (the CPU's flags faked through
$DENSENET_CPU_FLAGS, so that every test passes on any CPU), --dtype=auto resolved and recorded,
the emulated-bf16 warning, NCHW refused where the CPU has no NCHW kernel, thread pools sized to
each worker's share of the cores."""
import json
import os

import pytest

from launch import onednn
from tests import cpu_kinds, helpers
from tests.helpers import TINY

WITHOUT_BF16 = cpu_kinds.VNNI       # a Cascade Lake / Ice Lake
WITH_BF16 = cpu_kinds.NATIVE_BF16   # a Cooper Lake / Zen 4


def tiny(small_data, model_dir, *extra, env=None):
    return helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY,
                              "--epochs=1", "--steps_per_epoch=2", "--validation_steps=0",
                              *extra], env=env, timeout=300)


def first_line(proc):
    return next(line for line in proc.stdout.splitlines() if line.startswith("densenet"))


@pytest.mark.smoke
def test_bf16_on_a_cpu_without_it_warns_in_one_line_and_fp32_does_not(small_data, tmp_path):
    env = {"DENSENET_CPU_FLAGS": WITHOUT_BF16}
    warned = tiny(small_data, tmp_path / "bf16", "--dtype=bf16", env=env)
    lines = [line for line in warned.stdout.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, warned.stdout
    line = lines[0]
    assert line.startswith("warning: --dtype=bf16 on CPU (")  # the device, by its model name
    assert "no AVX512_BF16 or AMX-BF16" in line  # what it lacks
    factor = float(line.split("ran ")[1].split("x fp32's time")[0])  # measured by a probe
    assert factor > 0
    assert "--dtype=fp32" in line and "--dtype=auto" in line
    assert ", bf16, " in first_line(warned)  # the run still does what it was told
    quiet = tiny(small_data, tmp_path / "fp32", "--dtype=fp32", env=env)
    assert "warning:" not in quiet.stdout + quiet.stderr


@pytest.mark.parametrize("cpu_flags,onednn,picked", [
    pytest.param(WITHOUT_BF16, "1", "fp32", id="no-avx512_bf16"),
    pytest.param(WITH_BF16, "1", "bf16", id="avx512_bf16", marks=pytest.mark.smoke),
    # the flag is there, but without oneDNN TF emulates bf16
    pytest.param(WITH_BF16, "0", "fp32", id="avx512_bf16-onednn-off")])
def test_dtype_auto_picks_bf16_only_where_native_and_records_it(small_data, tmp_path, cpu_flags,
                                                               onednn, picked):
    env = {"DENSENET_CPU_FLAGS": cpu_flags, "TF_ENABLE_ONEDNN_OPTS": onednn}
    proc = tiny(small_data, tmp_path, "--dtype=auto", env=env)
    assert f", {picked} (--dtype=auto), " in first_line(proc)
    assert "warning:" not in proc.stdout
    flags_txt = (tmp_path / "flags.txt").read_text().splitlines()
    assert f"--dtype={picked}" in flags_txt and "--dtype=auto" not in flags_txt
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert machine["dtype"] == picked and machine["bf16_native"] == (picked == "bf16")
    assert machine["onednn"] == (onednn == "1")
    assert machine["onednn_choice"]["reason"] == f"TF_ENABLE_ONEDNN_OPTS={onednn}"
    assert first_line(proc).endswith(
        f"oneDNN {'on' if onednn == '1' else 'off'} (TF_ENABLE_ONEDNN_OPTS={onednn})")
    # flags.txt reruns the run as it ran, on any machine: the same dtype, no question asked.
    rerun = helpers.run_train([f"--flagfile={tmp_path / 'flags.txt'}",
                               f"--model_dir={tmp_path / 'rerun'}"], timeout=300)
    assert f", {picked}, " in first_line(rerun)


@pytest.mark.cpu_kind
def test_this_cpu_gets_bf16_from_auto_only_where_native_and_a_warning_only_where_emulated(
        small_data, tmp_path):
    """On this CPU (or the kind the session stands for), as its start settled oneDNN."""
    native = cpu_kinds.this_cpu() == "native-bf16" and onednn.settled().enabled
    auto = tiny(small_data, tmp_path / "auto", "--dtype=auto")
    assert f", {'bf16' if native else 'fp32'} (--dtype=auto), " in first_line(auto)
    assert json.loads((tmp_path / "auto" / "machine.json").read_text())["bf16_native"] is native
    told = tiny(small_data, tmp_path / "bf16", "--dtype=bf16")
    warnings = [line for line in told.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == (0 if native else 1), told.stdout
    assert "warning:" not in auto.stdout


@pytest.mark.smoke
def test_nchw_is_refused_in_one_line_where_the_cpu_has_no_nchw_kernel(small_data, tmp_path):
    """TF_ENABLE_ONEDNN_OPTS=0 makes any CPU one without oneDNN, as TensorFlow leaves it on a CPU
    without AVX512_VNNI/BF16 or AMX: its Conv2D then has no NCHW kernel."""
    proc = helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path}", *TINY,
                              "--data_format=NCHW"], env={"TF_ENABLE_ONEDNN_OPTS": "0"},
                             check=False, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "train: --data_format=NCHW: TensorFlow has no NCHW convolution on this CPU (oneDNN is "
        "off")
    assert proc.stderr.strip().endswith("NCHW is for GPUs, use --data_format=NHWC here")
    assert not (tmp_path / "flags.txt").exists()


@pytest.mark.smoke
def test_native_bf16_answer_follows_the_cpu_flags_and_onednn(monkeypatch):
    from launch import hardware
    monkeypatch.setenv("DENSENET_CPU_FLAGS", WITH_BF16.replace("avx512_bf16", "amx_bf16"))
    monkeypatch.setattr(hardware, "onednn_enabled", lambda: True)
    assert hardware.bf16_support() == hardware.Bf16Support(True, hardware.bf16_support().device,
                                                           "")
    monkeypatch.setattr(hardware, "onednn_enabled", lambda: False)
    assert not hardware.bf16_support().native
    assert "oneDNN" in hardware.bf16_support().missing
    monkeypatch.setenv("DENSENET_CPU_FLAGS", WITHOUT_BF16)
    assert hardware.bf16_support().missing == "no AVX512_BF16 or AMX-BF16"
    assert hardware.bf16_support(hpu=True).native


@pytest.mark.smoke
def test_thread_pools_are_each_workers_share_unless_given(monkeypatch):
    from launch import hardware
    cores = len(os.sched_getaffinity(0))
    for variable in ("HOROVOD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                     "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    alone = hardware.thread_pools(intra_op=None, inter_op=None, dataset_private=None)
    assert alone == hardware.ThreadPools(None, None, None)  # one process: TensorFlow's sizing
    monkeypatch.setenv("HOROVOD_LOCAL_SIZE", "4")
    share = max(1, cores // 4)
    assert hardware.thread_pools(intra_op=None, inter_op=None, dataset_private=None) == \
        hardware.ThreadPools(share, share, share)
    assert hardware.thread_pools(intra_op=3, inter_op=None, dataset_private=5) == \
        hardware.ThreadPools(3, share, 5)  # what the user gives wins
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "7")  # and so does the environment's own
    assert hardware.thread_pools(intra_op=None, inter_op=None, dataset_private=None) == \
        hardware.ThreadPools(None, share, share)


@pytest.mark.smoke
def test_a_worker_sharing_its_host_sizes_tensorflows_pools_to_its_share(small_data, tmp_path):
    """Two workers announced on this host (as horovodrun does) with one process: its pools are
    cores / 2, as TensorFlow itself reports them inside the run (the probe reads them back)."""
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    proc = tiny(small_data, tmp_path, env={"HOROVOD_LOCAL_SIZE": "2"})
    assert f"; threads: {share} intra-op, {share} inter-op, {share} tf.data; oneDNN " in \
        first_line(proc)
    machine = json.loads((tmp_path / "machine.json").read_text())
    assert machine["threads"] == {"intra_op": share, "inter_op": share, "dataset_private": share}
    probe = helpers.run_checked(
        [*helpers.train_command()[:2], "tests.launch.thread_probe", f"--dataset_dir={small_data}",
         f"--model_dir={tmp_path / 'probe'}", "--intra_op_threads=3"],
        timeout=120, env={"HOROVOD_LOCAL_SIZE": "2"})
    assert json.loads(probe.stdout.splitlines()[-1]) == {"intra_op": 3, "inter_op": share}
