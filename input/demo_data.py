"""A small labelled image set drawn procedurally: ten classes of shapes and textures, written
as recipe-format TFRecords. Deterministic (numpy seed), made in seconds, no downloads."""
import json
import os

import numpy as np
import tensorflow as tf

from input import records

CLASS_NAMES = ("circle", "square", "triangle", "cross", "ring", "horizontal_stripes",
               "vertical_stripes", "checkerboard", "diagonal_stripes", "dots")


def _colours(rng):
    """Two colours far enough apart to see a shape."""
    while True:
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if np.abs(a - b).sum() > 200:
            return a, b


def draw(class_index, size, rng):
    """uint8 [size, size, 3] image of class `class_index`."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    background, foreground = _colours(rng)
    cy, cx = rng.uniform(0.4, 0.6, 2) * size
    r = rng.uniform(0.25, 0.36) * size
    period = rng.uniform(0.16, 0.28) * size
    phase = rng.uniform(0, period)
    name = CLASS_NAMES[class_index]
    if name == "circle":
        mask = (y - cy) ** 2 + (x - cx) ** 2 < r ** 2
    elif name == "square":
        mask = (np.abs(y - cy) < r * 0.85) & (np.abs(x - cx) < r * 0.85)
    elif name == "triangle":
        mask = (y > cy - r) & (y < cy + r) & (np.abs(x - cx) < (y - (cy - r)) * 0.6)
    elif name == "cross":
        arm = r * 0.3
        mask = ((np.abs(y - cy) < arm) & (np.abs(x - cx) < r)) | \
               ((np.abs(x - cx) < arm) & (np.abs(y - cy) < r))
    elif name == "ring":
        d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        mask = (d < r) & (d > r * 0.5)
    elif name == "horizontal_stripes":
        mask = ((y + phase) % period) < period / 2
    elif name == "vertical_stripes":
        mask = ((x + phase) % period) < period / 2
    elif name == "checkerboard":
        mask = ((((y + phase) // period) + ((x + phase) // period)) % 2) == 0
    elif name == "diagonal_stripes":
        mask = ((x + y + phase) % (period * 1.4)) < period * 0.7
    else:  # dots
        mask = (((y + phase) % period - period / 2) ** 2 +
                ((x + phase) % period - period / 2) ** 2) < (period * 0.3) ** 2
    image = np.where(mask[..., None], foreground, background)
    image = image + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _example(encoded, label, synset, height, width, filename):
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(encoded), "image/class/label": i(label),
        "image/class/synset": b(synset.encode()), "image/height": i(height),
        "image/width": i(width), "image/format": b(b"JPEG"),
        "image/filename": b(filename.encode()), "image/channels": i(3),
        "image/colorspace": b(b"RGB")})).SerializeToString()


def write_demo_data(out_dir, train_per_class=100, val_per_class=20, size=72, train_shards=4,
                    val_shards=2, seed=0):
    """Writes <out_dir>/{train,validation}/<split>-NNNNN-of-NNNNN, dataset.json and record
    counts. Returns {split: number of examples}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, per_class, shards in (("train", train_per_class, train_shards),
                                     ("validation", val_per_class, val_shards)):
        folder = os.path.join(out_dir, split)
        os.makedirs(folder, exist_ok=True)
        items = [(c, k) for c in range(len(CLASS_NAMES)) for k in range(per_class)]
        order = rng.permutation(len(items))
        paths = [os.path.join(folder, f"{split}-{s:05d}-of-{shards:05d}") for s in range(shards)]
        writers = [tf.io.TFRecordWriter(p) for p in paths]
        counts = [0] * shards
        for n, item in enumerate(order):
            c, k = items[item]
            image = draw(c, size, rng)
            encoded = tf.io.encode_jpeg(image, quality=92).numpy()
            shard = n % shards
            writers[shard].write(_example(encoded, c + 1, CLASS_NAMES[c], size, size,
                                          f"{CLASS_NAMES[c]}_{k:04d}.JPEG"))
            counts[shard] += 1
        for w in writers:
            w.close()
        records.write_counts(out_dir, split, {os.path.basename(p): n
                                              for p, n in zip(paths, counts)})
        written[split] = len(items)
    with open(os.path.join(out_dir, "dataset.json"), "w") as f:
        json.dump({"num_classes": len(CLASS_NAMES), "class_names": list(CLASS_NAMES),
                   "examples": written}, f, indent=1)
    return written
