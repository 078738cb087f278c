"""Recipe-format TFRecords for tests, written with tf.io.TFRecordWriter and Pillow JPEGs."""
import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image


def jpeg_bytes(pixels, mode="RGB", fmt="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format=fmt, quality=90)
    return buffer.getvalue()


def example(encoded, label):
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def write_split(root, subset, records_per_file, size=24, label_of=None, seed=0):
    """Files <root>/<subset>/<subset>-0000k-of-n; record j overall gets label label_of(j)
    (default j + 1, unique). Returns the list of (file, index, label, pixels)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, subset)
    os.makedirs(folder, exist_ok=True)
    written, j = [], 0
    n = len(records_per_file)
    for k, count in enumerate(records_per_file):
        path = os.path.join(folder, f"{subset}-{k:05d}-of-{n:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for index in range(count):
                pixels = rng.integers(0, 256, (size, size + 4, 3), dtype=np.uint8)
                label = label_of(j) if label_of else j + 1
                writer.write(example(jpeg_bytes(pixels), label))
                written.append((path, index, label, pixels))
                j += 1
    return written


def write_dataset(root, records_per_file):
    """A train and a validation split of `records_per_file`, labels 1..n in each (different
    pixels); returns root as a string."""
    write_split(str(root), "train", records_per_file)
    write_split(str(root), "validation", records_per_file, seed=1)
    return str(root)
