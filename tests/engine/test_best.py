"""The best checkpoint (--keep_best): kept when an evaluation beats the best so far, by the
metric's direction, across new segments of the run (a new BestCheckpoint reading model_dir, as
after a kill -9), and holding the state of the step that scored; read back with TF's reader."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from engine import best, run_format

pytestmark = pytest.mark.smoke


def segment(model_dir, metric, variable, start_step):
    recorder = run_format.Recorder(str(model_dir), is_chief=True)
    keeper = best.BestCheckpoint(str(model_dir), metric=metric,
                                 checkpoint=tf.train.Checkpoint(v=variable), recorder=recorder,
                                 log=lambda *_: None)
    keeper.begin(start_step)
    return keeper, recorder


def kept_value(model_dir):
    record = best.read(str(model_dir))
    return record, float(tf.train.load_checkpoint(record["checkpoint"]).get_tensor(
        "v/.ATTRIBUTES/VARIABLE_VALUE"))


def files(model_dir):
    return sorted({f.split(".")[0] for f in os.listdir(model_dir / "best")
                   if f.startswith("ckpt-")})


def test_the_best_evaluation_is_kept_across_segments(tmp_path):
    v = tf.Variable(0.0)
    keeper, _ = segment(tmp_path, "top1", v, 0)
    for step, top1 in ((1, 0.3), (2, 0.5), (3, 0.4)):
        v.assign(float(step))
        keeper.evaluated(step, step, {"top1": top1, "loss": 1.0})
    record, value = kept_value(tmp_path)
    assert (record["step"], record["value"], record["metric"], value) == (2, 0.5, "top1", 2.0)
    assert files(tmp_path) == ["ckpt-2"]
    # A new segment (the run killed and resumed at step 3) goes on from the kept best.
    keeper, _ = segment(tmp_path, "top1", v, 3)
    for step, top1 in ((4, 0.45), (5, 0.6)):
        v.assign(float(step))
        keeper.evaluated(step, step, {"top1": top1})
    record, value = kept_value(tmp_path)
    assert (record["step"], value) == (5, 5.0)
    assert files(tmp_path) == ["ckpt-5"]


def test_loss_is_kept_at_its_lowest(tmp_path):
    v = tf.Variable(0.0)
    keeper, _ = segment(tmp_path, "loss_ema", v, 0)
    for step, loss in ((1, 2.0), (2, 1.5), (3, 1.7)):
        v.assign(float(step))
        keeper.evaluated(step, step, {"ema_loss": loss})
    assert kept_value(tmp_path)[0]["step"] == 2


def test_a_run_killed_between_its_evaluation_and_keeping_it_keeps_it_on_resume(tmp_path):
    """The resumed state is that of the evaluated step: begin() keeps it when its evaluation,
    on record, beats the best; a checkpoint a kill left half-kept is removed."""
    v = tf.Variable(1.0)
    keeper, recorder = segment(tmp_path, "top1", v, 0)
    keeper.evaluated(1, 1, {"top1": 0.3})
    tf.train.Checkpoint(v=tf.Variable(9.0)).write(str(tmp_path / "best" / "ckpt-7"))  # orphan
    recorder.write({"split": "validation", "step": 6, "epoch": 6, "top1": 0.8, "loss": 0.5})
    v.assign(6.0)
    segment(tmp_path, "top1", v, 6)
    record, value = kept_value(tmp_path)
    assert (record["step"], record["value"], value) == (6, 0.8, 6.0)
    assert files(tmp_path) == ["ckpt-6"]
    with open(tmp_path / "best" / "best.json") as f:
        assert json.load(f)["checkpoint"] == "ckpt-6"


def test_a_best_kept_before_any_rolling_checkpoint_holds_what_the_rolling_ones_hold(tmp_path):
    """begin() may keep a best before the segment wrote any checkpoint (a kill between an
    evaluation and keeping it): its file holds the same objects as one that TF's
    CheckpointManager writes of the same state, the save counter included."""
    v = tf.Variable(6.0)
    recorder = run_format.Recorder(str(tmp_path), is_chief=True)
    recorder.write({"split": "validation", "step": 6, "epoch": 6, "top1": 0.8, "loss": 0.5})
    segment(tmp_path, "top1", v, 6)  # a fresh tf.train.Checkpoint, never saved
    managed = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(6.0)),
                                         str(tmp_path / "rolling"), max_to_keep=1)
    keys = [set(tf.train.load_checkpoint(path).get_variable_to_shape_map())
            for path in (best.read(str(tmp_path))["checkpoint"], managed.save(6))]
    assert keys[0] == keys[1] and "save_counter/.ATTRIBUTES/VARIABLE_VALUE" in keys[0]


def test_a_net_restores_from_a_best_checkpoint_and_another_net_is_still_refused(tmp_path,
                                                                              capfd):
    """Read back as launch.export reads it: the net's parts must all fit (the save counter,
    whether the file holds it or not, is not the net's); a net of another width is refused with
    one error and none of TF's warnings about what it left unrestored."""
    import nets
    from engine import checkpoints

    def tiny(growth_rate, seed):
        return nets.build("densenet", blocks=(1, 1), growth_rate=growth_rate, stem_filters=8,
                          num_classes=10, seed=seed)
    trained = tiny(8, seed=1)
    plain = tf.train.Checkpoint(net=trained).write(str(tmp_path / "without_counter"))
    recorder = run_format.Recorder(str(tmp_path), is_chief=True)
    recorder.write({"split": "validation", "step": 2, "epoch": 2, "top1": 0.5, "loss": 1.0})
    best.BestCheckpoint(str(tmp_path), metric="top1", checkpoint=tf.train.Checkpoint(net=trained),
                        recorder=recorder, log=lambda *_: None).begin(2)
    for path in (plain, best.read(str(tmp_path))["checkpoint"]):
        restored = tiny(8, seed=2)
        checkpoints.restore_net(restored, path)
        for got, want in zip(restored.trainable_variables_in_order(),
                             trained.trainable_variables_in_order(), strict=True):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    capfd.readouterr()
    with pytest.raises(checkpoints.CheckpointError, match="does not fit densenet: "):
        checkpoints.restore_net(tiny(4, seed=2), plain)
    assert "could not be found in the restored object" not in "".join(capfd.readouterr())


def test_a_best_past_the_resumed_step_is_replaced(tmp_path):
    v = tf.Variable(4.0)
    keeper, _ = segment(tmp_path, "top1", v, 0)
    keeper.evaluated(4, 4, {"top1": 0.9})
    keeper, _ = segment(tmp_path, "top1", v, 2)  # resumed from an earlier checkpoint
    v.assign(3.0)
    keeper.evaluated(3, 3, {"top1": 0.2})
    record, value = kept_value(tmp_path)
    assert (record["step"], value) == (3, 3.0)
    np.testing.assert_equal(files(tmp_path), ["ckpt-3"])
