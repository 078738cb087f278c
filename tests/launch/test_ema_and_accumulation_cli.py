"""--ema_decay and --grad_accum_steps through the command line: exact resume with the average,
validation_ema records, the exported average, time that goes on counting across a resume."""
import sys

import pytest

from tests import helpers


def common(small_data, model_dir, *extra):
    return helpers.tiny_run(small_data, model_dir, "--steps_per_epoch=4", "--seed=3",
                            "--deterministic", "--ema_decay=0.9", *extra)


@pytest.mark.smoke
def test_resume_with_ema_and_accumulation_is_exact(small_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = ["--grad_accum_steps=2"]
    helpers.run_train(common(small_data, straight, "--epochs=2", *extra))
    helpers.run_train(common(small_data, resumed, "--epochs=1", *extra))
    helpers.run_train(common(small_data, resumed, "--epochs=2", *extra))
    keys = helpers.assert_same_latest_checkpoints(straight, resumed)
    assert sum(k.startswith("ema/") for k in keys) > 20
    assert helpers.metrics(straight) == helpers.metrics(resumed)
    splits = [r["split"] for r in helpers.metrics(resumed) if r["split"] != "train"]
    assert splits == ["validation", "validation_ema"] * 2
    # Time to accuracy: the resumed run's clock goes on from the first segment's.
    elapsed = [r["elapsed_sec"] for r in helpers.metrics(resumed, "validation", timing=True)]
    assert 0 < elapsed[0] < elapsed[1]


def test_exported_average_reproduces_validation_ema(small_data, tmp_path):
    run = tmp_path / "run"
    helpers.run_train(common(small_data, run, "--epochs=2", "--initial_lr=0.2"))
    record = helpers.metrics(run, "validation_ema")[-1]
    raw = helpers.metrics(run, "validation")[-1]
    export_dir = tmp_path / "saved"
    helpers.run_checked([sys.executable, "-m", "launch.export", f"--model_dir={run}",
                         f"--export_dir={export_dir}", "--ema"], timeout=300)
    top1, count = helpers.saved_model_top1(export_dir, small_data)
    assert count == record["examples"] == 30
    assert top1 == pytest.approx(record["top1"], abs=1e-9)
    assert record["top1"] != raw["top1"] or record["loss"] != raw["loss"]


def test_ema_newly_given_on_resume_starts_from_the_restored_weights(small_data, tmp_path):
    run = tmp_path / "run"
    first = ["--steps_per_epoch=2", "--validation_steps=0", "--seed=2"]
    helpers.run_train(helpers.tiny_run(small_data, run, *first, "--epochs=1"))
    out = helpers.run_train(helpers.tiny_run(small_data, run, *first, "--epochs=2",
                                             "--ema_decay=0.9"))
    assert "holds no weight average: it starts from the restored weights" in out.stdout
    assert "at step 2" in out.stdout
    values = helpers.checkpoint_values(helpers.latest_checkpoint(run))
    assert sum(k.startswith("ema/") for k in values) > 20
