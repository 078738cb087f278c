"""`python -m launch.train` end to end on small data: resume, reproduce, stop, refuse."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from tests import helpers

common = helpers.tiny_run
latest_checkpoint = helpers.latest_checkpoint


def test_resume_is_exact(small_data, tmp_path):
    """8 steps straight vs 4 steps, a new process, 4 more: identical weights, slots, step and
    training metrics (deterministic ops and input order)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    args = ["--steps_per_epoch=4", "--seed=5", "--deterministic", "--dropout_rate=0.1"]
    helpers.run_train(common(small_data, straight, "--epochs=2", *args))
    helpers.run_train(common(small_data, resumed, "--epochs=1", *args))
    out = helpers.run_train(common(small_data, resumed, "--epochs=2", *args))
    assert "resumed from" in out.stdout and "at step 4" in out.stdout
    keys = helpers.assert_same_latest_checkpoints(straight, resumed)
    assert any("optimizer/slots" in k for k in keys)
    assert helpers.metrics(straight, "train") == helpers.metrics(resumed, "train")
    assert [r["step"] for r in helpers.metrics(resumed, "validation")] == [4, 8]


@pytest.mark.smoke
def test_flags_txt_reproduces_the_run(small_data, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    helpers.run_train(common(small_data, first, "--epochs=2", "--steps_per_epoch=3",
                             "--deterministic", "--seed=11"))
    flagfile = (first / "flags.txt").read_text()
    assert "--seed=11" in flagfile and "--steps_per_epoch=3" in flagfile
    assert "--model=densenet" in flagfile and "--num_classes=10" in flagfile
    helpers.run_train([f"--flagfile={first / 'flags.txt'}", f"--model_dir={again}"])
    assert helpers.metrics(first) == helpers.metrics(again)
    assert len(helpers.metrics(first, "validation")) == 2


def test_drawn_seed_is_written_and_reproduces(small_data, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    helpers.run_train(common(small_data, first, "--epochs=1", "--steps_per_epoch=2",
                             "--deterministic", "--validation_steps=0"))
    seed_line = [line for line in (first / "flags.txt").read_text().splitlines()
                 if line.startswith("--seed=")]
    assert seed_line and int(seed_line[0].split("=")[1]) > 0
    helpers.run_train([f"--flagfile={first / 'flags.txt'}", f"--model_dir={again}"])
    assert helpers.metrics(first) == helpers.metrics(again)


def test_sigterm_checkpoints_the_current_step_and_the_rerun_continues(small_data, tmp_path):
    model_dir = tmp_path / "run"
    cmd = helpers.train_command(*common(small_data, model_dir, "--epochs=50",
                                        "--steps_per_epoch=10", "--validation_steps=0"))
    env = dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=helpers.REPO)
    deadline = time.time() + 180
    while time.time() < deadline and not (model_dir / "metrics.jsonl").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stopped = int(out.split("stopped by a signal after step ")[1].split(";")[0])
    assert latest_checkpoint(model_dir).endswith(f"ckpt-{stopped}")
    assert 0 < stopped < 500
    epochs = stopped // 10 + 1  # the rerun finishes the interrupted epoch
    rerun = helpers.run_train(common(small_data, model_dir, f"--epochs={epochs}",
                                     "--steps_per_epoch=10", "--validation_steps=0"))
    assert f"at step {stopped}" in rerun.stdout
    assert latest_checkpoint(model_dir).endswith(f"ckpt-{epochs * 10}")
    steps = [r["step"] for r in helpers.metrics(model_dir, "train")]
    assert steps == sorted(set(steps)) and steps[-1] == epochs * 10


def test_steps_per_loop_trains_exactly_as_single_steps(small_data, tmp_path):
    """k steps inside one tf.function are the same k steps."""
    args = ["--epochs=1", "--steps_per_epoch=6", "--seed=8", "--deterministic",
            "--validation_steps=0", "--log_steps=6"]
    helpers.run_train(common(small_data, tmp_path / "one", *args))
    helpers.run_train(common(small_data, tmp_path / "three", *args, "--steps_per_loop=3"))
    a = helpers.checkpoint_values(latest_checkpoint(tmp_path / "one"))
    b = helpers.checkpoint_values(latest_checkpoint(tmp_path / "three"))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert helpers.metrics(tmp_path / "three", "train", timing=True)[0]["input_wait_sec"] is None


def test_jit_compile_is_honoured_inside_steps_per_loop(small_data, tmp_path):
    """--jit_compile with --steps_per_loop=3: XLA compiles the step (TF says so in its log)."""
    args = ["--epochs=1", "--steps_per_epoch=3", "--seed=8", "--validation_steps=0",
            "--log_steps=3", "--steps_per_loop=3", "--jit_compile"]
    run = helpers.run_train(common(small_data, tmp_path / "jit", *args),
                            env={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "Compiled cluster using XLA" in run.stderr
    assert np.isfinite(helpers.metrics(tmp_path / "jit", "train")[-1]["loss"])
