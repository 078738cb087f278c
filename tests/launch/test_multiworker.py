"""The same command under horovodrun -np 2 --gloo: data-parallel training, rank-0 files, and
evaluation that counts every example once whatever the number of workers."""
import os
import sys

import numpy as np
import pytest

from tests import helpers
from tests.helpers import TINY

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def horovodrun(args, timeout=400):
    return helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                                *helpers.train_command(*args)], timeout)


@pytest.fixture(scope="module")
def two_worker_run(small_data, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("hvd_run")
    out = horovodrun([f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY,
                      "--epochs=2", "--steps_per_epoch=3", "--seed=2"])
    return model_dir, out


def test_two_workers_train_end_to_end(two_worker_run):
    model_dir, out = two_worker_run
    assert "horovod (gloo, 2 workers)" in out.stdout
    train = helpers.metrics(model_dir, "train")
    # Every 2nd step and at epoch ends (3 steps each), written by rank 0 alone.
    assert [r["step"] for r in train] == [2, 3, 4, 6]
    validation = helpers.metrics(model_dir, "validation")
    assert [(r["step"], r["examples"]) for r in validation] == [(3, 30), (6, 30)]
    assert sorted(os.listdir(model_dir / "checkpoints"))[-1].startswith("ckpt-6")
    assert (model_dir / "flags.txt").exists()


def test_evaluation_is_the_same_with_one_and_two_workers(two_worker_run, small_data, tmp_path):
    model_dir, _ = two_worker_run
    import tensorflow as tf
    checkpoint = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    args = [f"--dataset_dir={small_data}", *TINY, "--seed=2",
            f"--evaluate_checkpoint_path={checkpoint}"]
    helpers.run_train([*args, f"--model_dir={tmp_path / 'one'}"])
    horovodrun([*args, f"--model_dir={tmp_path / 'two'}"])
    one = helpers.metrics(tmp_path / "one", "validation")
    two = helpers.metrics(tmp_path / "two", "validation")
    assert len(one) == len(two) == 1
    assert one[0]["examples"] == two[0]["examples"] == 30
    assert (one[0]["top1"], one[0]["top5"]) == (two[0]["top1"], two[0]["top5"])
    np.testing.assert_allclose(one[0]["loss"], two[0]["loss"], rtol=1e-5)


def test_resuming_on_another_number_of_workers_says_what_changes(two_worker_run, small_data,
                                                                 tmp_path):
    """The 2-worker run's checkpoint (step 6, inside the 10-step pass over the 80 training
    examples) resumes on 1 worker at step 6, and says in one line that the rest of that pass is
    dealt differently; a later resume on the same count says nothing of the kind."""
    import shutil
    model_dir = tmp_path / "run"
    shutil.copytree(two_worker_run[0], model_dir)
    args = [f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY, "--seed=2",
            "--steps_per_epoch=3", "--validation_steps=0"]
    out = helpers.run_train([*args, "--epochs=3"]).stdout
    notes = [line for line in out.splitlines() if "checkpointed" in line]
    assert "at step 6, epoch 2" in out, out
    assert notes == ["resuming on 1 worker a run that 2 workers checkpointed: each worker now "
                     "takes 8 of the 8 examples per step from its own shard; the rest of the "
                     "interrupted pass over the training data is dealt from the new shards' "
                     "order, so until it ends some examples may come twice and others not at "
                     "all; later passes see each example once"], out
    assert [r["step"] for r in helpers.metrics(model_dir, "train")][-2:] == [8, 9]
    again = helpers.run_train([*args, "--epochs=4"]).stdout
    assert "at step 9, epoch 3" in again and "checkpointed" not in again, again
