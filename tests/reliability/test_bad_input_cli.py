"""Bad input refused through the real command line: one line naming the culprit, exit code 1,
no traceback."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from input import demo_data
from tests import helpers
from tests.helpers import TINY
from tests.input import record_files


def refused(args, command="launch.train"):
    cmd = [sys.executable, "-m", command, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=helpers.REPO,
                          env=dict(os.environ, PYTHONPATH=helpers.REPO, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture
def data_copy(tmp_path):
    root = tmp_path / "data"
    demo_data.write_demo_data(str(root), train_per_class=2, val_per_class=1, size=40,
                              train_shards=2, val_shards=1)
    return root


def run_args(data, tmp_path, *extra):
    return [f"--dataset_dir={data}", f"--model_dir={tmp_path / 'run'}", *TINY, "--epochs=1",
            "--steps_per_epoch=3", "--shuffle_buffer=1", "--deterministic", *extra]


def rewrite_record(path, index, serialized):
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    records[index] = serialized
    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in records:
            writer.write(r)


def test_corrupt_jpeg_is_named_with_file_and_record(data_copy, tmp_path):
    shard = data_copy / "train" / "train-00001-of-00002"
    rewrite_record(shard, 3, record_files.example(b"\xff\xd8\xff\xe0garbage", 2))
    line = refused(run_args(data_copy, tmp_path))
    assert line.startswith(f"train: bad input: {shard} record 3: "), line


def test_evaluate_checkpoint_names_a_corrupt_validation_record(data_copy, tmp_path):
    """--evaluate_checkpoint_path reads only validation data: its input errors are located
    the same way as training's (a train record broken too must not be named instead)."""
    helpers.run_train(run_args(data_copy, tmp_path, "--validation_steps=0"))
    checkpoint = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    train_shard = data_copy / "train" / "train-00000-of-00002"
    rewrite_record(train_shard, 0, record_files.example(b"\xff\xd8\xff\xe0garbage", 2))
    shard = data_copy / "validation" / "validation-00000-of-00001"
    rewrite_record(shard, 2, record_files.example(b"\xff\xd8\xff\xe0garbage", 2))
    line = refused([*run_args(data_copy, tmp_path / "eval"),
                    f"--evaluate_checkpoint_path={checkpoint}"])
    assert line.startswith(f"train: bad input: {shard} record 2: "), line


def test_corrupt_jpeg_skipped_when_asked(data_copy, tmp_path):
    shard = data_copy / "train" / "train-00001-of-00002"
    rewrite_record(shard, 3, record_files.example(b"\xff\xd8\xff\xe0garbage", 2))
    out = helpers.run_train(run_args(data_copy, tmp_path, "--skip_corrupt"))
    assert f"skipping 1 bad train example(s), first {shard} record 3" in out.stdout


def test_truncated_tfrecord_is_named(data_copy, tmp_path):
    shard = data_copy / "validation" / "validation-00000-of-00001"
    shard.write_bytes(shard.read_bytes()[:-30])
    line = refused(run_args(data_copy, tmp_path))
    assert line.startswith(f"train: {shard}: truncated or corrupt TFRecord after record "), line


def test_label_out_of_range_is_named(data_copy, tmp_path):
    shard = data_copy / "train" / "train-00000-of-00002"
    image = record_files.jpeg_bytes(np.zeros((40, 40, 3), np.uint8))
    rewrite_record(shard, 0, record_files.example(image, 11))
    line = refused(run_args(data_copy, tmp_path))
    assert "label 11 outside 1..10" in line and "train-00000-of-00002" in line, line


def test_missing_and_empty_splits_are_named(data_copy, tmp_path):
    for f in os.listdir(data_copy / "validation"):
        os.remove(data_copy / "validation" / f)
    line = refused(run_args(data_copy, tmp_path))
    assert line == (f"train: split directory {data_copy}/validation holds no validation-* "
                    f"TFRecord files"), line
    os.rmdir(data_copy / "validation")
    line = refused(run_args(data_copy, tmp_path))
    assert line == f"train: split directory {data_copy}/validation does not exist", line


def test_checkpoint_of_another_model_is_refused(small_data, tmp_path):
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'a'}", *TINY,
                       "--epochs=1", "--steps_per_epoch=1", "--validation_steps=0"])
    checkpoint = tf.train.latest_checkpoint(str(tmp_path / "a" / "checkpoints"))
    other = [a for a in TINY if not a.startswith("--blocks")] + ["--blocks=2,3"]
    line = refused([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'b'}", *other,
                    f"--resume_from_checkpoint_path={checkpoint}"])
    assert line.startswith(f"train: checkpoint {checkpoint} cannot be restored"), line


def test_keras_h5_of_another_architecture_is_refused(small_data, tmp_path):
    from tests.nets import keras_reference as ref
    path = str(tmp_path / "densenet169.h5")
    ref.save_keras2_h5(ref.keras_densenet("densenet169", 64, classes=10), path)
    line = refused([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'run'}",
                    "--model=densenet121", "--image_size=64", "--batch_size=2", "--epochs=1",
                    "--steps_per_epoch=1", f"--init_checkpoint={path}"])
    assert line.startswith(f"train: {path}: pool4_bn/gamma has shape (1280,)"), line


def test_predict_refuses_a_file_that_is_not_an_image(small_data, tmp_path):
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={tmp_path / 'run'}", *TINY,
                       "--epochs=1", "--steps_per_epoch=1", "--validation_steps=0"])
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is text")
    line = refused([f"--model_dir={tmp_path / 'run'}", str(notes)], command="launch.predict")
    assert line == f"predict: {notes}: not a decodable JPEG, PNG, GIF or BMP image"
