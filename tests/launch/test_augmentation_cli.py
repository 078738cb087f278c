"""RandAugment, random erasing, mixup and CutMix through the command line: replayed exactly by
a flagfile rerun and across a stop and resume, and they do reach the training batches."""
import pytest

from tests import helpers

ALL_ON = ["--randaugment=9,2,0.5", "--random_erasing=0.25", "--mixup_alpha=0.2",
          "--cutmix_alpha=1.0", "--label_smoothing=0.1", "--deterministic", "--seed=5",
          "--steps_per_epoch=4"]


@pytest.mark.smoke
def test_flagfile_rerun_with_all_augmentations_is_exact(small_data, tmp_path):
    first, again, plain = tmp_path / "first", tmp_path / "again", tmp_path / "plain"
    helpers.run_train(helpers.tiny_run(small_data, first, "--epochs=2", *ALL_ON))
    flagfile = (first / "flags.txt").read_text()
    for flag in ("--randaugment=9,2,0.5", "--random_erasing=0.25", "--mixup_alpha=0.2",
                 "--cutmix_alpha=1.0"):
        assert flag in flagfile
    helpers.run_train([f"--flagfile={first / 'flags.txt'}", f"--model_dir={again}"])
    assert helpers.metrics(first) == helpers.metrics(again)
    helpers.assert_same_latest_checkpoints(first, again)
    # The augmentations reach the batches: without them the same run trains differently.
    helpers.run_train(helpers.tiny_run(small_data, plain, "--epochs=2", "--deterministic",
                                       "--seed=5", "--steps_per_epoch=4",
                                       "--label_smoothing=0.1"))
    assert helpers.metrics(first, "train") != helpers.metrics(plain, "train")


def test_stop_and_resume_mixes_as_the_uninterrupted_run(small_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = [*ALL_ON, "--grad_accum_steps=2", "--log_steps=1"]
    helpers.run_train(helpers.tiny_run(small_data, straight, "--epochs=3", *extra))
    helpers.run_train(helpers.tiny_run(small_data, resumed, "--epochs=1", *extra))
    helpers.run_train(helpers.tiny_run(small_data, resumed, "--epochs=3", *extra))
    helpers.assert_same_latest_checkpoints(straight, resumed)
    assert helpers.metrics(straight) == helpers.metrics(resumed)
