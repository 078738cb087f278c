"""Large batches and what a cluster run is judged by, through the real command line: LARS with
gradient clipping resumes exactly and trains the same run on 2 workers; --keep_best keeps the
best evaluation across a kill -9 and exports it; --target_accuracy stops at the first evaluation
past it and records the time to it across a resume."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.launch.test_slots_cli import HOROVODRUN, ONE_THREAD, assert_same_run

LARS = ["--optimizer=lars", "--lars_eta=0.02", "--initial_lr=2.0", "--clip_grad_norm=1.0",
        "--weight_decay=1e-4", "--seed=3", "--deterministic", "--steps_per_epoch=5",
        "--validation_steps=0"]


def lars_run(small_data, model_dir, *extra):
    return helpers.tiny_run(small_data, model_dir, *LARS, *extra)


@pytest.mark.smoke
def test_lars_with_clipping_resumes_exactly_and_records_the_gradient_norm(small_data, tmp_path):
    """The step schedule (a function of the step alone) so that the first segment may stop
    early with --epochs=1: 1 + 1 epochs end as 2 straight ones, bit for bit."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    helpers.run_train(lars_run(small_data, straight, "--epochs=2"))
    helpers.run_train(lars_run(small_data, resumed, "--epochs=1"))
    out = helpers.run_train(lars_run(small_data, resumed, "--epochs=2")).stdout
    assert "at step 5" in out
    keys = helpers.assert_same_latest_checkpoints(straight, resumed)
    assert any(k.startswith("optimizer/slots/") for k in keys)  # LARS momentum, restored
    assert helpers.metrics(straight) == helpers.metrics(resumed)
    norms = [r["grad_norm"] for r in helpers.metrics(straight, "train")]
    assert len(norms) == 6 and all(n > 0 for n in norms)  # steps 2, 4, 5, 7, 9, 10
    # The clip bites (the norms before clipping exceed 1.0), and LARS moved the kernels.
    assert max(norms) > 1.0


@pytest.mark.slow
def test_lars_on_two_workers_trains_the_one_worker_run(small_data, tmp_path):
    """2 workers x 2 micro-batches against 1 x 4, with the poly schedule and a warm-up."""
    extra = ["--batch_size=16", "--micro_batch_size=4", "--lr_schedule=poly",
             "--warmup_epochs=1", "--epochs=2", *ONE_THREAD]
    one, two = tmp_path / "one", tmp_path / "two"
    helpers.run_train(lars_run(small_data, one, *extra), timeout=600)
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         *helpers.train_command(*lars_run(small_data, two, *extra))], 600)
    assert_same_run(one, two)
    # The records' LR (of the step's update: u = step - 1) against MLPerf's formula: linear
    # warm-up over 5 updates, then 1e-4 + (2 - 1e-4) (1 - (u - 5) / 6)^2.
    for record in helpers.metrics(one, "train"):
        u = record["step"] - 1
        expected = 2.0 * u / 5 if u < 5 else 1e-4 + (2.0 - 1e-4) * (1 - (u - 5) / 6) ** 2
        assert record["lr"] == pytest.approx(expected, rel=1e-6), record


def checkpoint_steps(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return [] if state is None else [int(p.rsplit("-", 1)[1])
                                     for p in state.all_model_checkpoint_paths]


@pytest.mark.slow
def test_keep_best_survives_a_kill_9_and_export_best_reproduces_its_top1(small_data, tmp_path):
    run = helpers.tiny_run(small_data, tmp_path, "--epochs=8", "--steps_per_epoch=4",
                           "--keep_best=top1", "--keep_checkpoints=1", "--seed=4",
                           "--initial_lr=0.1")
    env = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(helpers.train_command(*run), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=helpers.REPO,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (
            os.path.exists(tmp_path / "best" / "best.json")
            and len(helpers.metrics(tmp_path, "validation")) >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = max(checkpoint_steps(tmp_path))
    assert killed_at < 32, "the run ended before the kill; the test needs a longer run"
    out = helpers.run_train(run).stdout
    assert f"at step {killed_at}" in out

    validation = helpers.metrics(tmp_path, "validation")
    assert [r["step"] for r in validation] == [4 * (e + 1) for e in range(8)]
    top1 = [r["top1"] for r in validation]
    best_step = validation[int(np.argmax(top1))]["step"]  # the first of equal bests
    kept = json.loads((tmp_path / "best" / "best.json").read_text())
    assert (kept["metric"], kept["value"], kept["step"]) == ("top1", max(top1), best_step)
    assert sorted({f.split(".")[0] for f in os.listdir(tmp_path / "best")
                   if f.startswith("ckpt-")}) == [f"ckpt-{best_step}"]
    assert checkpoint_steps(tmp_path) == [32]  # the rolling one, apart from the best

    export_dir = tmp_path / "saved"
    printed = helpers.run_checked([sys.executable, "-m", "launch.export",
                                   f"--model_dir={tmp_path}", f"--export_dir={export_dir}",
                                   "--best"], timeout=300).stdout
    assert f"best/ckpt-{best_step}" in printed
    assert helpers.saved_model_top1(export_dir, small_data)[0] == pytest.approx(max(top1),
                                                                            abs=1e-9)


def test_export_best_works_for_a_best_kept_on_resume_after_a_kill_in_the_evaluation_window(
        small_data, tmp_path):
    """The state a kill leaves between an evaluation (on record in metrics.jsonl, after its
    checkpoint) and keeping its checkpoint as the best, made deterministically: a finished
    1-epoch run whose best/ is removed. The rerun keeps that evaluation's checkpoint as the best
    before it writes any checkpoint of its own; launch.export --best then exports it and the
    SavedModel scores the recorded top-1 (the restore's strictness: tests/engine/test_best.py)."""
    run = helpers.tiny_run(small_data, tmp_path, "--epochs=1", "--steps_per_epoch=3",
                           "--keep_best=top1", "--seed=4", "--initial_lr=0.1")
    helpers.run_train(run)
    shutil.rmtree(tmp_path / "best")
    out = helpers.run_train(run).stdout
    assert "best top1 so far" in out and f"{tmp_path}/best/ckpt-3" in out
    (top1,) = [r["top1"] for r in helpers.metrics(tmp_path, "validation")]
    export_dir = tmp_path / "saved"
    printed = helpers.run_checked([sys.executable, "-m", "launch.export",
                                   f"--model_dir={tmp_path}", f"--export_dir={export_dir}",
                                   "--best"], timeout=300).stdout
    assert "best/ckpt-3" in printed
    assert helpers.saved_model_top1(export_dir, small_data)[0] == pytest.approx(top1, abs=1e-9)


def test_export_best_of_a_run_without_one_is_one_line(small_data, tmp_path):
    helpers.run_train(helpers.tiny_run(small_data, tmp_path, "--epochs=1", "--steps_per_epoch=1",
                                       "--validation_steps=1"))
    proc = helpers.run_unchecked([sys.executable, "-m", "launch.export",
                                  f"--model_dir={tmp_path}", f"--export_dir={tmp_path}/out",
                                  "--best"], timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"export: {tmp_path} kept no best checkpoint (train with --keep_best)")


@pytest.mark.slow
def test_target_accuracy_stops_at_the_first_evaluation_past_it_across_a_resume(small_data,
                                                                              tmp_path):
    """The target is the best top-1 of a 6-epoch reference run (same seed, deterministic),
    reached first at epoch k >= 3; the run under test stops after 2 epochs and resumes with the
    target: it stops at epoch k, and its record counts both segments' training time."""
    common = ["--steps_per_epoch=4", "--seed=6", "--deterministic", "--initial_lr=0.1"]
    reference = tmp_path / "reference"
    helpers.run_train(helpers.tiny_run(small_data, reference, *common, "--epochs=6"))
    top1 = [r["top1"] for r in helpers.metrics(reference, "validation")]
    k = int(np.argmax(top1)) + 1
    assert k >= 3, f"the reference peaked at epoch {k}: {top1}"

    run = tmp_path / "run"
    helpers.run_train(helpers.tiny_run(small_data, run, *common, "--epochs=2"))
    first = helpers.metrics(run, "validation", timing=True)[-1]["elapsed_sec"]
    target = [*common, "--epochs=6", f"--target_accuracy={max(top1)}"]
    out = helpers.run_train(helpers.tiny_run(small_data, run, *target)).stdout
    assert f"reached --target_accuracy={max(top1)}" in out
    assert [r["top1"] for r in helpers.metrics(run, "validation")] == top1[:k]
    assert max(checkpoint_steps(run)) == 4 * k
    record, = helpers.metrics(run, "time_to_accuracy", timing=True)
    at_k = helpers.metrics(run, "validation", timing=True)[-1]
    assert (record["step"], record["epoch"], record["top1"], record["images"]) == \
        (4 * k, k, max(top1), 4 * k * 8)
    assert first < record["elapsed_sec"] and \
        abs(record["elapsed_sec"] - at_k["elapsed_sec"]) < 1.0
    # The same command again: reached already, so it stops before training.
    again = helpers.run_train(helpers.tiny_run(small_data, run, *target))
    assert "reached --target_accuracy" in again.stdout
    assert len(helpers.metrics(run, "time_to_accuracy")) == 1
    assert max(checkpoint_steps(run)) == 4 * k
