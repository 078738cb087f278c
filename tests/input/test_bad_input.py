"""Broken data fails at the first bad element with the file and record named, or is skipped and
counted when asked."""
import os

import numpy as np
import pytest
import tensorflow as tf

import input as inputs
from tests.input import record_files

pytestmark = pytest.mark.smoke


def build(root, **options):
    return inputs.build("imagenet", dataset_dir=str(root), num_classes=10, image_size=16,
                        deterministic=True, shuffle_buffer=1, **options)


def replace_record(path, index, serialized):
    records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
    records[index] = serialized
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)


@pytest.fixture
def corrupt_jpeg_dir(tmp_path):
    record_files.write_split(str(tmp_path), "train", [3, 3], label_of=lambda j: j % 10 + 1)
    record_files.write_split(str(tmp_path), "validation", [3, 3], label_of=lambda j: j % 10 + 1)
    for split in ("train", "validation"):
        replace_record(str(tmp_path / split / f"{split}-00001-of-00002"), 1,
                       record_files.example(b"\xff\xd8\xff\xe0 not really a jpeg", 10))
    return tmp_path


def test_corrupt_jpeg_fails_and_is_located(corrupt_jpeg_dir):
    data = build(corrupt_jpeg_dir)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(data.eval_dataset(2))
    explained = data.explain(error.value, splits=["validation"])
    assert isinstance(explained, inputs.InputError)
    assert str(explained).startswith(
        f"bad input: {corrupt_jpeg_dir}/validation/validation-00001-of-00002 record 1: ")


def test_skip_corrupt_leaves_bad_examples_out_and_counts_them(corrupt_jpeg_dir):
    data = build(corrupt_jpeg_dir, skip_corrupt=True)
    assert data.num_examples("train") == 5 and data.num_examples("validation") == 5
    assert [(os.path.basename(p), i) for p, i, _ in data.bad_examples("train")] == \
        [("train-00001-of-00002", 1)]
    for shards in (1, 2):
        masks = [m for s in range(shards)
                 for _, _, m in data.eval_dataset(2, worker=s, workers=shards)]
        assert float(np.sum(masks)) == 5.0
    labels = [int(label) for _, label in data.train_dataset(1).unbatch().take(15)]
    assert 9 not in labels  # label 10 (class 9) is only on the corrupt record ...
    assert len(labels) == 15  # ... and the stream goes on without it


def test_label_out_of_range_names_file_and_record(tmp_path):
    record_files.write_split(str(tmp_path), "validation", [2, 2],
                             label_of=lambda j: 11 if j == 2 else 1)
    data = build(tmp_path)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        list(data.eval_dataset(2))
    message = str(error.value)
    assert "outside 1..10" in message and "validation-00001-of-00002" in message
    assert str(data.explain(error.value)) == \
        f"label 11 outside 1..10 in {tmp_path}/validation/validation-00001-of-00002 record 0"


def test_label_zero_is_out_of_range_too(tmp_path):
    record_files.write_split(str(tmp_path), "train", [2], label_of=lambda j: 0)
    data = build(tmp_path)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label"):
        next(iter(data.train_dataset(1)))


def test_truncated_tfrecord_is_refused_naming_the_file(tmp_path):
    record_files.write_split(str(tmp_path), "train", [3, 3])
    path = tmp_path / "train" / "train-00001-of-00002"
    path.write_bytes(path.read_bytes()[:-50])
    data = build(tmp_path)
    with pytest.raises(inputs.InputError,
                       match=r"train-00001-of-00002: truncated or corrupt TFRecord after record 2"):
        data.num_examples("train")


def test_missing_and_empty_splits_are_refused(tmp_path):
    with pytest.raises(inputs.InputError, match=f"split directory {tmp_path}/train does not exist"):
        build(tmp_path).num_examples("train")
    (tmp_path / "train").mkdir()
    with pytest.raises(inputs.InputError, match="holds no train-\\* TFRecord files"):
        build(tmp_path).num_examples("train")


@pytest.mark.parametrize("workers", [1, 3])
def test_skip_corrupt_resume_continues_the_same_stream(corrupt_jpeg_dir, workers):
    """A worker's data-epoch is its share less the skipped records (5 of 6 with one worker; with
    3 workers for 2 files, records are dealt and one worker holds the bad one), so a resume at
    example k lands where the uninterrupted stream was after k examples."""
    data = build(corrupt_jpeg_dir, skip_corrupt=True)
    for shard in range(workers):
        whole = [int(label) for _, label in data.train_dataset(
            1, worker=shard, workers=workers, seed=2).unbatch().take(12)]
        resumed = [int(label) for _, label in data.train_dataset(
            1, worker=shard, workers=workers, seed=2, start_example=7).unbatch().take(5)]
        assert resumed == whole[7:12]
