"""The vendor README's three commands, and our multi-server recipes, run to completion on small
recipe-format data.

Changed from the README, and only this: --dataset_dir (small data), --epochs, --steps_per_epoch,
--validation_steps (small), --image_size=32 (batch 256 at 224 px needs about 40 GB on a CPU; the
smallest size DenseNet-121 takes costs a 49th of it),
no --run_on_hpu (no Gaudi here; test_bad_flags checks its clear refusal), --dtype=auto (the
recipes' bf16 where this CPU computes it natively; emulated bf16 would only make the test several
times slower, and bf16 itself is tested in tests/nets), and the 8-card run as horovodrun -np 2
--gloo (mpirun and 8 devices are not on this machine): its 8 micro-batch slots, 4 per worker.
The 16- and 32-card recipes run likewise on 2 workers, with a tiny net and a small batch.
"""
import os
import sys

import pytest

from tests import helpers

RECIPES = os.path.join(helpers.REPO, "launch", "recipes")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
TINY_NET = ["--model=densenet", "--blocks=2,2", "--growth_rate=8", "--stem_filters=16"]
SMALL = ["--epochs=1", "--steps_per_epoch=1", "--validation_steps=1", "--image_size=32",
         "--log_steps=1", "--save_summary_steps=1", "--norun_on_hpu", "--dtype=auto"]


@pytest.mark.smoke
@pytest.mark.parametrize("recipe", sorted(os.listdir(RECIPES)))
def test_every_recipe_parses_into_its_input(recipe):
    """Every flag of every recipe exists and its value parses, down to the input options."""
    from absl import flags

    from input import augment
    from launch import plan, train_flags
    fv = flags.FlagValues()
    train_flags.define(fv, validate=False)
    fv(["train", f"--flagfile={os.path.join(RECIPES, recipe)}"])
    planned = plan.from_flags(fv).input
    if recipe.endswith("_ra.flags"):
        assert planned.options.randaugment == augment.RandAugment(7, 2, 0.5, increasing=True)
        assert planned.mixing.cutmix_alpha == 1.0


def read_events(folder):
    """Scalars as TensorBoard itself reads them."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util
    accumulator = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    # TF 2 writes scalars as tensor summaries; TensorBoard's scalar plugin reads them so.
    return {tag: [float(tensor_util.make_ndarray(e.tensor_proto))
                  for e in accumulator.Tensors(tag)]
            for tag in accumulator.Tags()["tensors"]}


@pytest.mark.slow
@pytest.mark.parametrize("recipe,workers,extra", [
    ("hpu_1card_bf16_b256_90ep", 1, []),
    ("hpu_1card_fp32_b128_1ep", 1, []),
    ("hpu_8cards_bf16_b1024_90ep", 2, []),
    # Ours, with every augmentation and the EMA; one worker, a batch a CPU trains quickly.
    ("hpu_8cards_bf16_b1024_ra", 1, ["--batch_size=32", "--micro_batch_size=32",
                                     "--nouse_hpu_strategy"]),
    # The multi-server recipes with their slot counts (16, 32) on 2 workers, the net and the
    # batch scaled down (DenseNet-121 at batch 8192 would take minutes a step here).
    ("hpu_16cards_bf16_b2048_90ep", 2, [*TINY_NET, "--batch_size=64", "--micro_batch_size=4"]),
    ("hpu_32cards_bf16_b8192_lars", 2, [*TINY_NET, "--batch_size=128",
                                        "--micro_batch_size=4"])])
def test_recipe_command_runs_and_leaves_its_files(recipe, workers, extra, small_data,
                                                  tmp_path):
    flagfile = os.path.join(RECIPES, f"{recipe}.flags")
    args = [f"--flagfile={flagfile}", f"--dataset_dir={small_data}", f"--model_dir={tmp_path}",
            *SMALL, *extra]
    if workers == 1:
        helpers.run_train(args, timeout=900)
    else:
        out = helpers.run_checked([HOROVODRUN, "-np", str(workers), "-H", f"localhost:{workers}",
                                   "--gloo", *helpers.train_command(*args)], timeout=1200)
        slots = {"8cards": 8, "16cards": 16, "32cards": 32}[recipe.split("_")[1]]
        assert f"in {slots} micro-batch slots ({slots // 2} per worker)" in out.stdout, out.stdout
    assert os.listdir(tmp_path / "checkpoints")
    flags_txt = (tmp_path / "flags.txt").read_text()
    model = "--model=densenet" if TINY_NET[0] in extra else "--model=densenet121"
    optimizer = "lars" if recipe.endswith("_lars") else "sgd"
    assert f"{model}\n" in flags_txt and f"--optimizer={optimizer}\n" in flags_txt
    train, validation = helpers.metrics(tmp_path, "train"), helpers.metrics(tmp_path, "validation")
    assert [r["step"] for r in train] == [1] and [r["step"] for r in validation] == [1]
    events = read_events(tmp_path / "train")
    assert {"loss", "top1", "top5", "lr", "images_per_sec"} <= set(events)
    assert events["loss"] == pytest.approx([train[0]["loss"]], rel=1e-6)
    assert set(read_events(tmp_path / "validation")) >= {"loss", "top1", "top5"}
