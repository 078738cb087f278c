"""The preflight (launch/preflight/): its verdicts from hand-made findings, and the command on
one worker: ready on a clean setup (its checkpoint estimate against a checkpoint training
writes), a batch larger than the data. Two hosts over ssh, with a missing shard, another
package version, a model_dir too small, a micro-batch that does not fit a limited allocator and
a worker that froze: tests/launch/test_multihost.py; the roll call: test_roll_call.py."""
import copy
import json
import os
import socket
import sys

from launch.preflight import verdicts
from tests import helpers
from tests.helpers import TINY

PLAN = {"batch_size": 16, "workers": 2, "micro_batches": 1, "micro_batch_size": 8,
        "keep_checkpoints": 5, "keep_best": False, "elastic": False}


def worker(rank, host):
    """A worker's findings as the probes return them, everything in order."""
    return {
        "identity": {"rank": rank, "host": host},
        "software": {"python": "3.11.7", "packages": {"numpy": "1.26.4", "absl-py": "2.1.0"},
                     "horovod_build": {"version": "0.28.1", "controllers": ["gloo"],
                                       "tensor_operations": []},
                     "project": {"commit": "abc", "source": "0123"},
                     "locks": {"constraints-tf2.21.txt": "77"}},
        "device": {"device": "CPU (x)", "bf16_native": False, "bf16_missing": "no AVX512_BF16",
                   "dtype": "fp32", "bf16_emulated": False},
        "data_listing": {"files": 3, "bytes": 30, "digest": "d1",
                         "listing": [["train/train-0", 10], ["train/train-1", 10],
                                     ["validation/validation-0", 10]]},
        "data_sample": {"examples": {"train": 80, "validation": 30}},
        "step": {"fits": True, "micro_batch": 8, "seconds_per_step": 0.1,
                 "images_per_sec": 80.0, "peak_bytes": 1, "parameters": 1000,
                 "checkpoint_bytes": 1000, "too_large": []},
        "model_dir": {"folder": "/runs", "free": 10**9, "writable": True, "needs": 6000,
                      "sees_rank0": True},
        "input": {"images_per_sec": 500.0},
        "all_reduce": {"seconds": 0.02, "gb_per_sec": 0.1, "interface": "lo", "workers": 2},
    }


def judged(b):
    return verdicts.judge([worker(0, "host-a"), b], plan_facts=PLAN)


def only(found, level, check):
    assert [(v.level, v.check) for v in found] == [(level, check)], found
    return found[0]


def test_a_clean_pair_has_no_verdict_and_its_speed_is_the_slower_workers():
    assert judged(worker(1, "host-b")) == []
    # Each worker: 8 images per 0.1 s step + 0.02 s all-reduce = 66.7 img/s, its input 500:
    # the pair takes 16 images per 0.12 s.
    assert verdicts.predicted_rate([worker(0, "a"), worker(1, "b")], PLAN) == \
        round(16 / 0.12, 1)


def test_a_different_package_version_is_named_with_both_versions():
    b = worker(1, "host-b")
    b["software"]["packages"]["absl-py"] = "0.0.1"
    v = only(judged(b), "blocker", "software")
    assert (v.ranks, v.hosts) == ((1,), ("host-b",))
    assert v.text == "absl-py 0.0.1 (rank 0's host: 2.1.0)"


def test_a_missing_shard_is_named_by_file():
    b = worker(1, "host-b")
    b["data_listing"].update(digest="d2", files=2, listing=[["train/train-0", 10],
                                                            ["validation/validation-0", 10]])
    v = only(judged(b), "blocker", "data")
    assert v.hosts == ("host-b",) and v.text.endswith("missing: train/train-1"), v.text


def test_a_small_model_dir_a_micro_batch_too_large_and_a_slow_input_are_named():
    a, b = worker(0, "host-a"), worker(1, "host-b")
    a["model_dir"]["free"] = 5000  # 6 checkpoints of 1000 bytes do not fit
    b["step"].update(fits=False, micro_batch=2, too_large=[
        {"micro_batch": 8, "error": "OOM when allocating"},
        {"micro_batch": 4, "error": "OOM when allocating"}])
    a["input"]["images_per_sec"] = 20.0  # the step takes 66.7 img/s
    found = verdicts.judge([a, b], plan_facts=PLAN)
    assert [(v.level, v.check, v.ranks) for v in found] == [
        ("blocker", "model_dir", (0,)), ("blocker", "memory", (1,)), ("warning", "speed", (0,))]
    assert "has 0.0 MB free, the run keeps 0.0 MB (5 checkpoints" in found[0].text
    assert "the largest that fits is 2: --micro_batch_size=2 with the same --batch_size" in \
        found[1].text
    assert found[2].text.startswith("input-bound by 3.3x")
    assert verdicts.column(found, 0, "model_dir") == "BLOCKER"
    assert verdicts.column(found, 0, "speed") == "warning"
    assert verdicts.column(found, 1, "speed") == "ok"


def test_a_probe_that_timed_out_or_failed_is_a_blocker_of_its_check():
    b = worker(1, "host-b")
    b["data_listing"] = {"timeout": 60}
    b["step"] = {"error": "ValueError: no"}
    found = judged(b)
    assert [(v.check, v.text) for v in found] == [
        ("data", "data_listing did not finish in 60 s"),
        ("memory", "step failed: ValueError: no")]


def test_a_model_dir_per_host_warns_and_blocks_elastic_training():
    b = worker(1, "host-b")
    b["model_dir"]["sees_rank0"] = False
    assert only(judged(b), "warning", "model_dir").hosts == ("host-b",)
    elastic = dict(PLAN, elastic=True)
    found = verdicts.judge([worker(0, "a"), copy.deepcopy(b)], plan_facts=elastic)
    assert only(found, "blocker", "model_dir").text.endswith("use a shared model_dir")


RUN = [*TINY, "--dtype=fp32", "--epochs=1", "--preflight_input_seconds=1"]
ENV = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")


def preflight(*args, env=ENV):
    return helpers.run_unchecked([sys.executable, "-m", "launch.preflight", *args], 300,
                                 env=env)


def test_one_worker_ready_writes_only_its_report_and_estimates_the_checkpoint(
        small_data, tmp_path):
    model_dir = tmp_path / "run"
    proc = preflight(f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *RUN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ready: no blocker on any host" in proc.stdout
    assert os.listdir(model_dir) == ["preflight.json"]
    report = json.loads((model_dir / "preflight.json").read_text())
    assert report["ready"] and report["verdicts"] == []
    found = report["workers"][0]
    assert found["data_sample"]["examples"] == {"train": 80, "validation": 30}
    assert found["data_listing"]["files"] == len(
        [n for _, _, names in os.walk(small_data) for n in names])
    # Training's own checkpoint of the same recipe (TensorFlow's writer, with its counters).
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'trained'}",
                       *TINY, "--dtype=fp32", "--epochs=1", "--steps_per_epoch=1",
                       "--validation_steps=0"])
    folder = tmp_path / "trained" / "checkpoints"
    written = sum(os.path.getsize(folder / n) for n in os.listdir(folder)
                  if n.startswith("ckpt-1."))
    assert abs(found["step"]["checkpoint_bytes"] - written) < 0.05 * written, \
        (found["step"]["checkpoint_bytes"], written)
    assert found["model_dir"]["needs"] == 6 * found["step"]["checkpoint_bytes"]


def test_a_batch_larger_than_the_data_is_the_data_blocker_and_the_rest_is_not_run(small_data,
                                                                                 tmp_path):
    """--batch_size 100 over 80 training examples: the plan does not settle. One blocker, in
    the data column, with training's own words; the probes that needed the plan say they did
    not run; exit 1."""
    proc = preflight(f"--dataset_dir={small_data}", f"--model_dir={tmp_path}", *RUN,
                     "--batch_size=100")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    blockers = [line for line in proc.stdout.splitlines() if line.startswith("blocker:")]
    assert blockers == [f"blocker: data: {socket.gethostname()} (rank 0): data_sample failed: "
                        f"CommandError: --batch_size 100 is larger than the 80 training "
                        f"examples"], proc.stdout
    assert "warning: memory: " in proc.stdout and "step not run: the data did not open" in \
        proc.stdout
