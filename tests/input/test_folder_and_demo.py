"""The folder module and the demo data set."""
import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import input as inputs
from input import demo_data

pytestmark = pytest.mark.smoke


def test_folder_module_reads_classes_sorted_with_png_and_greyscale(tmp_path):
    rng = np.random.default_rng(0)
    layout = {"train": {"zebra": 3, "ant": 2, "moth": 1}, "validation": {"zebra": 1, "ant": 2}}
    for split, classes in layout.items():
        for name, count in classes.items():
            os.makedirs(tmp_path / split / name)
            for k in range(count):
                pixels = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
                mode, ext = [("RGB", "png"), ("L", "jpg"), ("RGB", "JPEG")][k % 3]
                Image.fromarray(pixels).convert(mode).save(tmp_path / split / name / f"{k}.{ext}")
    (tmp_path / "train" / "zebra" / "notes.txt").write_text("not an image: ignored")
    data = inputs.build("folder", dataset_dir=str(tmp_path), image_size=12, deterministic=True)
    assert data.class_names == ["ant", "moth", "zebra"] and data.num_classes == 3
    assert data.num_examples("train") == 6 and data.num_examples("validation") == 3
    labels = sorted(int(label) for _, label in data.train_dataset(1).unbatch().take(6))
    assert labels == [0, 0, 1, 2, 2, 2]
    batches = list(data.eval_dataset(2))
    got = [int(label) for _, ls, ms in batches for label, m in zip(ls, ms) if m == 1.0]
    assert got == [0, 0, 2]
    assert all(images.shape == (2, 12, 12, 3) for images, _, _ in batches)


def test_demo_data_is_deterministic_and_recipe_format(tmp_path):
    first = demo_data.write_demo_data(str(tmp_path / "a"))
    demo_data.write_demo_data(str(tmp_path / "b"))

    def digest(root):
        h = hashlib.sha256()
        for split in ("train", "validation"):
            for name in sorted(os.listdir(root / split)):
                if not name.endswith(".json"):
                    h.update((root / split / name).read_bytes())
        return h.hexdigest()
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    data = inputs.build("imagenet", dataset_dir=str(tmp_path / "a"), image_size=32)
    assert data.num_classes == 10 and data.class_names[0] == "circle"
    assert data.num_examples("train") == first["train"] == 1000
    assert data.num_examples("validation") == first["validation"] == 200
    labels = [int(label) for _, ls, m in data.eval_dataset(50) for label in ls]
    assert sorted(set(labels)) == list(range(10))
    # Each record's synset names its class, and the label agrees (1-based in the file).
    path = tmp_path / "a" / "train" / "train-00000-of-00004"
    record = tf.train.Example.FromString(next(iter(tf.data.TFRecordDataset(str(path)))).numpy())
    features = record.features.feature
    label = features["image/class/label"].int64_list.value[0]
    assert features["image/class/synset"].bytes_list.value[0].decode() == \
        demo_data.CLASS_NAMES[label - 1]
