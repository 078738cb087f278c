"""--precise_bn_batches and --bn_momentum through the command line."""
from tests import helpers


def common(small_data, model_dir, *extra):
    return helpers.tiny_run(small_data, model_dir, "--steps_per_epoch=3", "--seed=4",
                            "--deterministic", "--dropout_rate=0.1", *extra)


def test_precise_bn_leaves_the_training_stream_alone(small_data, tmp_path):
    """With precise BN on, stop after epoch 1 and resume equals the uninterrupted run: its
    batches come from their own stream and it draws no dropout."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    helpers.run_train(common(small_data, straight, "--epochs=2", "--precise_bn_batches=2"))
    helpers.run_train(common(small_data, resumed, "--epochs=1", "--precise_bn_batches=2"))
    helpers.run_train(common(small_data, resumed, "--epochs=2", "--precise_bn_batches=2"))
    helpers.assert_same_latest_checkpoints(straight, resumed)
    assert helpers.metrics(straight) == helpers.metrics(resumed)
    records = helpers.metrics(resumed, "validation", timing=True)
    assert len(records) == 2 and all(r["precise_bn_sec"] > 0 for r in records)


def test_unsettled_statistics_are_warned_about_unless_precise(small_data, tmp_path):
    plain = helpers.run_train(common(small_data, tmp_path / "plain", "--epochs=1"))
    warnings = [line for line in plain.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--precise_bn_batches" in warnings[0], plain.stdout
    assert "after 3 updates" in warnings[0] and "97% of their initial values" in warnings[0]
    precise = helpers.run_train(common(small_data, tmp_path / "precise", "--epochs=1",
                                       "--precise_bn_batches=2"))
    assert "warning:" not in precise.stdout
    fast = helpers.run_train(common(small_data, tmp_path / "fast", "--epochs=2",
                                    "--bn_momentum=0.5"))
    # At momentum 0.5 the threshold is 6 updates: epoch 1 (3) warns, epoch 2 (6) does not.
    assert [line.split(" updates")[0] for line in fast.stdout.splitlines()
            if line.startswith("warning:")] == ["warning: after 3"]


def test_evaluate_checkpoint_recomputes_the_statistics(small_data, tmp_path):
    run = tmp_path / "run"
    helpers.run_train(common(small_data, run, "--epochs=1", "--validation_steps=0"))
    checkpoint = helpers.latest_checkpoint(run)
    out = helpers.run_train(common(small_data, tmp_path / "eval", "--precise_bn_batches=2",
                                   f"--evaluate_checkpoint_path={checkpoint}"))
    assert "warning:" not in out.stdout
    record = helpers.metrics(tmp_path / "eval", "validation", timing=True)[-1]
    assert record["precise_bn_sec"] > 0 and record["examples"] == 30
