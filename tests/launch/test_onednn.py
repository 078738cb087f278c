"""oneDNN on or off per machine (launch/onednn.py): the probe's times, its cache, the rule, and
the setting that TensorFlow itself then reports (its own IsMklEnabled, not our record of it)."""
import json
import os
import subprocess
import sys

import pytest

from launch import onednn
from tests import cpu_kinds, helpers

# The probe runs only where the CPU has no native bf16: the tests of the probe stand in for such
# a CPU (whatever this one is), in every process they start and in their own machine_key.
PROBED = "plain"

# Prints the decision this process took and what TensorFlow runs.
SETTLE_AND_REPORT = (
    "import json, dataclasses; from launch import onednn; d = onednn.settle(); "
    "from launch import hardware; "
    "print(json.dumps({**dataclasses.asdict(d), 'tensorflow': hardware.onednn_enabled(), "
    "'line': d.describe()}))")


def child_env(cache_home, kind=PROBED, **env):
    """This environment with its own cache, without TF_ENABLE_ONEDNN_OPTS (which the tests' own
    start set), standing in for a CPU of `kind` (None: the one this session stands for), plus
    `env`."""
    full = {k: v for k, v in os.environ.items() if k != onednn.VARIABLE}
    full.update(PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2",
                XDG_CACHE_HOME=str(cache_home), **env)
    if kind is not None:
        full.update(cpu_kinds.stand_in(kind))
    return full


def settle_in_child(cache_home, **env):
    """A fresh process that settles oneDNN with its own cache and no TF_ENABLE_ONEDNN_OPTS, on
    a CPU without native bf16 (the probe's branch)."""
    full = child_env(cache_home, **env)
    return subprocess.Popen([sys.executable, "-c", SETTLE_AND_REPORT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full, cwd=helpers.REPO)


def answer(process):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def cache_entries(cache_home):
    with open(os.path.join(cache_home, "densenet-ctl", onednn.CACHE_FILE)) as f:
        return json.load(f)


def test_the_probe_times_both_settings_once_per_machine_and_tensorflow_runs_its_choice(tmp_path):
    # Two workers starting together on an empty cache: one probes, the other waits and reads.
    first, second = (answer(p) for p in [settle_in_child(tmp_path), settle_in_child(tmp_path)])
    entries = cache_entries(tmp_path)
    assert len(entries) == 1
    (times,) = entries.values()
    assert times["seconds_on"] > 0 and times["seconds_off"] > 0
    for got in (first, second):
        assert (got["seconds_on"], got["seconds_off"]) == (times["seconds_on"],
                                                          times["seconds_off"])
        assert got["enabled"] == onednn.choose(times["seconds_on"], times["seconds_off"]).enabled
        assert got["tensorflow"] == got["enabled"]  # TensorFlow's own answer
        assert got["line"].startswith(f"oneDNN {'on' if got['enabled'] else 'off'} (probe")
    # Cached: a later start reads the same times (a probe would time anew and differ).
    stamp = os.path.getmtime(os.path.join(tmp_path, "densenet-ctl", onednn.CACHE_FILE))
    third = answer(settle_in_child(tmp_path))
    assert (third["seconds_on"], third["seconds_off"]) == (times["seconds_on"],
                                                          times["seconds_off"])
    assert os.path.getmtime(os.path.join(tmp_path, "densenet-ctl", onednn.CACHE_FILE)) == stamp


@pytest.mark.smoke
def test_the_users_setting_wins_without_a_probe(tmp_path):
    for value, enabled in (("0", False), ("1", True)):
        got = answer(settle_in_child(tmp_path, TF_ENABLE_ONEDNN_OPTS=value))
        assert got["enabled"] is enabled and got["tensorflow"] is enabled
        assert got["seconds_on"] is None and got["line"] == (
            f"oneDNN {'on' if enabled else 'off'} (TF_ENABLE_ONEDNN_OPTS={value})")
    assert not os.path.exists(os.path.join(tmp_path, "densenet-ctl", onednn.CACHE_FILE))


def test_a_corrupt_cache_is_probed_anew(tmp_path):
    os.makedirs(tmp_path / "densenet-ctl")
    (tmp_path / "densenet-ctl" / onednn.CACHE_FILE).write_text("{not json")
    got = answer(settle_in_child(tmp_path))
    assert got["seconds_on"] > 0 and got["tensorflow"] == got["enabled"]
    assert len(cache_entries(tmp_path)) == 1


@pytest.mark.smoke
@pytest.mark.parametrize("kind, seconds_on, seconds_off, enabled, reason", [
    ("plain", 1.0, 3.0, True, "probe: 3.00x faster with it"),  # against TF's default
    ("vnni", 3.0, 1.0, False, "probe: 3.00x faster without it"),
    ("plain", 1.0, 1.04, False, "within 1.04x either way, TensorFlow's default"),
    ("vnni", 1.04, 1.0, True, "within 1.04x either way, TensorFlow's default"),
])
def test_the_faster_setting_is_kept_beyond_the_noise_margin(monkeypatch, kind, seconds_on,
                                                            seconds_off, enabled, reason):
    monkeypatch.setenv(onednn.CPU_FLAGS_VARIABLE, cpu_kinds.KINDS[kind])
    decision = onednn.choose(seconds_on, seconds_off)
    assert decision.enabled is enabled and reason in decision.reason


@pytest.mark.parametrize("kind", ["plain", "vnni", "native-bf16"])
def test_each_kind_of_cpu_takes_its_branch(monkeypatch, kind):
    """Native bf16 keeps oneDNN on without a probe; the other two kinds ask the probe."""
    monkeypatch.delenv(onednn.VARIABLE, raising=False)
    monkeypatch.setattr(onednn, "tensorflow_loaded", lambda: False)
    monkeypatch.setattr(onednn, "_accelerator_host", lambda: False)
    monkeypatch.setenv(onednn.CPU_FLAGS_VARIABLE, cpu_kinds.KINDS[kind])
    probed = onednn.Decision(False, "probe: planted")
    monkeypatch.setattr(onednn, "_probed", lambda: probed)
    decision = onednn.decide()
    if kind == "native-bf16":
        assert decision == onednn.Decision(True, "native bf16 goes through it")
    else:
        assert decision is probed


def plant_probe_answer(monkeypatch, cache_home, kind, seconds_on, seconds_off):
    """Probe times in the cache under the machine key of a CPU of `kind` (None: the one this
    session stands for): a start there takes them without probing."""
    if kind is not None:
        monkeypatch.setenv(onednn.CPU_FLAGS_VARIABLE, cpu_kinds.KINDS[kind])
    cache = cache_home / "densenet-ctl"
    os.makedirs(cache)
    (cache / onednn.CACHE_FILE).write_text(json.dumps(
        {onednn.machine_key(): {"seconds_on": seconds_on, "seconds_off": seconds_off}}))


def train_first_line_and_machine(small_data, tmp_path, kind):
    """A one-step training run on a CPU of `kind` (None: this session's) with the cache under
    tmp_path/cache: its first line and its machine.json."""
    model_dir = tmp_path / "run"
    proc = subprocess.run(helpers.train_command(
        f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *helpers.TINY, "--epochs=1",
        "--steps_per_epoch=1", "--validation_steps=0"), capture_output=True, text=True,
        env=child_env(tmp_path / "cache", kind), cwd=helpers.REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = next(line for line in proc.stdout.splitlines() if line.startswith("densenet"))
    return first, json.loads((model_dir / "machine.json").read_text())


def probe_line(enabled):
    return (f"; oneDNN {'on' if enabled else 'off'} (probe: 3.00x faster "
            f"{'with' if enabled else 'without'} it; TF_ENABLE_ONEDNN_OPTS={int(not enabled)} "
            f"turns it {'off' if enabled else 'on'})")


@pytest.mark.parametrize("seconds_on, seconds_off", [(1.0, 3.0), (3.0, 1.0)])
def test_a_training_run_takes_the_cached_answer_and_says_so(small_data, tmp_path, monkeypatch,
                                                            seconds_on, seconds_off):
    """Times planted in the cache for this machine (standing in for one without native bf16):
    the run takes them without probing, runs TensorFlow with the faster setting and names it in
    its first line."""
    plant_probe_answer(monkeypatch, tmp_path / "cache", PROBED, seconds_on, seconds_off)
    first, machine = train_first_line_and_machine(small_data, tmp_path, PROBED)
    enabled = seconds_on < seconds_off
    assert first.endswith(probe_line(enabled))
    assert machine["onednn"] is enabled  # what TensorFlow reports it runs
    assert machine["onednn_choice"]["seconds_on"] == seconds_on


@pytest.mark.cpu_kind
def test_a_training_run_on_this_cpu_takes_this_cpus_branch(small_data, tmp_path, monkeypatch):
    """On this CPU (or the kind the session stands for), with a planted probe answer against
    TensorFlow's default: native bf16 keeps oneDNN on without reading it, runs bf16 natively;
    any other CPU takes the planted answer."""
    against_default = not onednn.tensorflow_default()
    times = (1.0, 3.0) if against_default else (3.0, 1.0)
    plant_probe_answer(monkeypatch, tmp_path / "cache", None, *times)
    first, machine = train_first_line_and_machine(small_data, tmp_path, None)
    native = cpu_kinds.this_cpu() == "native-bf16"
    if native:
        assert first.endswith("; oneDNN on (native bf16 goes through it; "
                              "TF_ENABLE_ONEDNN_OPTS=0 turns it off)")
        assert machine["onednn"] is True and machine["onednn_choice"]["seconds_on"] is None
    else:
        assert first.endswith(probe_line(against_default))
        assert machine["onednn"] is against_default
    assert machine["bf16_native"] is native
