"""What a newcomer sees first: no TensorFlow start-up noise from any entry point (on both
lanes), and plain log lines instead of a progress line when stdout is not a terminal."""
import os
import pty
import subprocess
import sys

import pytest

from tests import helpers

# The lines the issue quotes, as TF 2.21 prints them (TF 2.15 prints the oneDNN one in its own
# format, and the cpu_feature_guard INFO line).
NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
         "Could not find cuda drivers", "failed call to cuInit",
         "This TensorFlow binary is optimized")
ENTRY_POINTS = ("launch.train", "launch.export", "launch.predict", "launch.benchmark",
                "launch.preprocess_imagenet", "launch.profile", "launch.make_demo_data")


def run_plain(args, **kwargs):
    """`python ARGS` as a user starts it: no TF_CPP_MIN_LOG_LEVEL of the test runner's."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=helpers.REPO,
                          env={**env, "PYTHONPATH": helpers.REPO}, timeout=300, **kwargs)


def noise_in(output):
    return [line for line in output.splitlines() if any(n in line for n in NOISE)]


@pytest.mark.smoke
@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_helpfull_prints_no_start_up_noise(module):
    proc = run_plain(["-m", module, "--helpfull"])
    assert "--helpfull" in proc.stdout + proc.stderr  # absl's help did print
    assert noise_in(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]


@pytest.mark.smoke
def test_a_training_step_prints_no_start_up_noise(tmp_path):
    proc = run_plain(["-m", "launch.train", "--input=synthetic", f"--model_dir={tmp_path}",
                      *helpers.TINY, "--num_classes=10", "--epochs=1", "--steps_per_epoch=1",
                      "--validation_steps=0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 1 epoch 1.00" in proc.stdout
    assert noise_in(proc.stdout + proc.stderr) == [], proc.stderr[-3000:]


@pytest.mark.smoke
def test_the_filter_passes_real_warnings_and_errors_on():
    """What the C++ side writes to stderr while TensorFlow loads goes on, except the noise."""
    code = ("import os\nfrom launch import startup\n"
            "with startup.noise_dropped_from_stderr():\n"
            "    os.write(2, b'W0000 real.cc:1] a real warning\\n')\n"
            "    os.write(2, b'I0000 port.cc:153] oneDNN custom operations are on. You may\\n')\n"
            "    os.write(2, b'E0000 real.cc:2] a real error\\n')\n")
    proc = run_plain(["-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["W0000 real.cc:1] a real warning",
                                        "E0000 real.cc:2] a real error"]


@pytest.mark.smoke
def test_progress_is_a_live_line_on_a_terminal_and_plain_lines_elsewhere(tmp_path):
    args = ["-m", "launch.train", "--input=synthetic", *helpers.TINY, "--num_classes=10",
            "--epochs=1", "--steps_per_epoch=4", "--validation_steps=0", "--progress"]
    piped = run_plain([*args, f"--model_dir={tmp_path / 'piped'}"])
    assert piped.returncode == 0, piped.stderr[-3000:]
    assert "\r" not in piped.stdout
    assert [line.split(":")[0] for line in piped.stdout.splitlines()
            if line.startswith("step ")] == ["step 2 epoch 0.50", "step 4 epoch 1.00"]
    leader, follower = pty.openpty()
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        proc = subprocess.Popen([sys.executable, *args, f"--model_dir={tmp_path / 'tty'}"],
                                stdout=follower, stderr=subprocess.DEVNULL, cwd=helpers.REPO,
                                env={**os.environ, "PYTHONPATH": helpers.REPO})
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = terminal.read(4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=300) == 0
    assert b"\r" in seen and b"step 2 epoch 0.50:" not in seen, seen[-2000:]
