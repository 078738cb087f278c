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


def test_resuming_on_another_number_of_workers_continues_the_slots(two_worker_run, small_data,
                                                                  tmp_path):
    """The 2-worker run's checkpoint (2 slots, step 6) resumes on 1 worker, which runs both
    slots and says so in one line; a later resume on the same count says nothing of the kind;
    --micro_batch_size that would make other slots is refused in one line."""
    import shutil
    model_dir = tmp_path / "run"
    shutil.copytree(two_worker_run[0], model_dir)
    args = [f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY, "--seed=2",
            "--steps_per_epoch=3", "--validation_steps=0"]
    out = helpers.run_train([*args, "--epochs=3"]).stdout
    notes = [line for line in out.splitlines() if "checkpointed" in line]
    assert "at step 6, epoch 2" in out and "in 2 micro-batch slots (2 per worker)" in out, out
    assert notes == ["resuming on 1 worker a run that 2 workers checkpointed: its 2 "
                     "micro-batch slots now run 2 per worker; the run goes on exactly as it "
                     "would have"], out
    assert [r["step"] for r in helpers.metrics(model_dir, "train")][-2:] == [8, 9]
    again = helpers.run_train([*args, "--epochs=4"]).stdout
    assert "at step 9, epoch 3" in again and "checkpointed" not in again, again
    before = sorted(os.listdir(model_dir / "checkpoints"))
    refused = helpers.run_train([*args, "--epochs=5", "--micro_batch_size=2"], check=False)
    assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
        "train: --micro_batch_size=2 makes 4 micro-batch slots, but the run being resumed has "
        "2 (micro-batch 4): drop the flag to continue it, or use another --model_dir"]
    assert sorted(os.listdir(model_dir / "checkpoints")) == before


def test_a_worker_count_that_does_not_divide_the_slots_is_refused(small_data, tmp_path):
    """3 slots on 2 workers, or a 1-slot run resumed on 2: one line naming the slots and the
    counts that work, exit 1, nothing written; --allow_redeal deals new slots, saying what
    that changes."""
    odd = horovodrun_unchecked([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'odd'}",
                                *TINY, "--batch_size=6", "--micro_batch_size=2", "--epochs=1"])
    assert odd.returncode != 0
    assert ("train: 2 workers do not divide this run's 3 micro-batch slots (--batch_size=6 in "
            "micro-batches of 2): run it on a worker count that divides 3 (1, 3)"
            ) in odd.stderr, odd.stderr[-2000:]
    assert not os.path.exists(tmp_path / "odd")
    args = [f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'one'}", *TINY,
            "--steps_per_epoch=3", "--validation_steps=0", "--seed=2"]
    helpers.run_train([*args, "--epochs=1"])
    before = sorted(os.listdir(tmp_path / "one" / "checkpoints"))
    refused = horovodrun_unchecked([*args, "--epochs=2"])
    assert refused.returncode != 0
    assert ("train: 2 workers do not divide this run's 1 micro-batch slots (--batch_size=8 in "
            "micro-batches of 8): run it on a worker count that divides 1 (1), or pass "
            "--allow_redeal to deal new slots") in refused.stderr, refused.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "one" / "checkpoints")) == before
    redealt = horovodrun([*args, "--epochs=2", "--allow_redeal"]).stdout
    assert ("resuming on 2 workers a run that 1 worker checkpointed: each worker now takes 4 "
            "of the 8 examples per step from its own shard; the rest of the interrupted pass "
            "over the training data is dealt from the new shards' order") in redealt, redealt


def horovodrun_unchecked(args, timeout=400):
    return helpers.run_unchecked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                                  *helpers.train_command(*args)], timeout)
