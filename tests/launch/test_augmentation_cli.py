"""RandAugment, random erasing, mixup and CutMix through the command line: replayed exactly by
a flagfile rerun, and they do reach the training batches. (A stop and resume with all of them
on, on the same or another worker count: tests/launch/test_slots_cli.py.)"""
from tests import helpers

ALL_ON = ["--randaugment=9,2,0.5", "--random_erasing=0.25", "--mixup_alpha=0.2",
          "--cutmix_alpha=1.0", "--label_smoothing=0.1", "--deterministic", "--seed=5",
          "--steps_per_epoch=4"]


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
