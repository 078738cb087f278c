"""Raw ILSVRC 2012 -> the recipe's TFRecords.

Input layout: <raw>/train/<synset>/*.JPEG, <raw>/validation/*.JPEG and <raw>/synset_labels.txt
(one synset per validation image, in file-name order). Labels are 1..N over the sorted synsets.
Output: <out>/train/train-00000-of-01024 ... and <out>/validation/validation-00000-of-00128, with
image/encoded, image/class/label, image/class/synset, image/height, image/width, image/format,
image/filename (base name), image/colorspace, image/channels. JPEG bytes are stored as they are,
except PNG files disguised as .JPEG and CMYK JPEGs, re-encoded as RGB JPEG. Training files are
shuffled with a fixed seed. A shard is written to a temporary name and renamed when complete, so
a rerun after an interruption keeps finished shards and writes only the missing ones.
"""
import multiprocessing
import os
import random
import struct
import sys
import time

from input import records

SHUFFLE_SEED = 0


def list_split(raw_data_dir, split):
    """[(path, synset)] in output order, and the sorted synsets."""
    train_dir = os.path.join(raw_data_dir, "train")
    if not os.path.isdir(train_dir):
        raise records.InputError(f"{train_dir} does not exist (expected train/<synset>/*.JPEG)")
    synsets = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if not synsets:
        raise records.InputError(f"{train_dir} holds no synset folders")
    if split == "train":
        items = [(os.path.join(train_dir, s, f), s) for s in synsets
                 for f in sorted(os.listdir(os.path.join(train_dir, s)))
                 if f.lower().endswith((".jpeg", ".jpg", ".png"))]
        random.Random(SHUFFLE_SEED).shuffle(items)
        return items, synsets
    val_dir = os.path.join(raw_data_dir, "validation")
    labels_file = os.path.join(raw_data_dir, "synset_labels.txt")
    if not os.path.isdir(val_dir):
        raise records.InputError(f"{val_dir} does not exist")
    if not os.path.isfile(labels_file):
        raise records.InputError(f"{labels_file} does not exist (one synset per validation image)")
    files = sorted(f for f in os.listdir(val_dir) if f.lower().endswith((".jpeg", ".jpg", ".png")))
    with open(labels_file) as f:
        labels = [line.strip() for line in f if line.strip()]
    if len(labels) != len(files):
        raise records.InputError(f"{labels_file}: {len(labels)} labels for {len(files)} "
                                 f"validation images in {val_dir}")
    unknown = sorted(set(labels) - set(synsets))
    if unknown:
        raise records.InputError(f"{labels_file}: synset {unknown[0]} has no training folder")
    return [(os.path.join(val_dir, f), s) for f, s in zip(files, labels)], synsets


def jpeg_components(data):
    """Number of colour components in a JPEG's frame header (3 RGB/YCbCr, 1 grey, 4 CMYK)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                      0xCF):
            return data[i + 9]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + length
    return None


def _encode_example(tf, path, synset, label):
    with open(path, "rb") as f:
        data = f.read()
    is_png = data[:8] == b"\x89PNG\r\n\x1a\n"
    if is_png or jpeg_components(data) == 4:
        # PNG disguised as JPEG, or CMYK: decode to RGB and store a JPEG as the recipe does.
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        # Full-resolution chroma: 4:2:0 would blur colour edges that the source had.
        data = tf.io.encode_jpeg(image, quality=100, chroma_downsampling=False).numpy()
    height, width, _ = tf.io.extract_jpeg_shape(data).numpy()

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(data), "image/class/label": i(label),
        "image/class/synset": b(synset.encode()), "image/height": i(height),
        "image/width": i(width), "image/format": b(b"JPEG"),
        "image/filename": b(os.path.basename(path).encode()),
        "image/colorspace": b(b"RGB"), "image/channels": i(3)})).SerializeToString()


def _write_shard(job):
    """Writes one shard (in a worker process); returns (shard path, records written)."""
    import tensorflow as tf

    out_path, items, label_of = job
    tmp = out_path + ".incomplete"
    with tf.io.TFRecordWriter(tmp) as writer:
        for path, synset in items:
            writer.write(_encode_example(tf, path, synset, label_of[synset]))
    os.replace(tmp, out_path)
    return out_path, len(items)


def shard_ranges(count, shards):
    """Contiguous, near-equal [start, end) ranges."""
    return [(count * k // shards, count * (k + 1) // shards) for k in range(shards)]


def convert(raw_data_dir, out_dir, train_shards=1024, validation_shards=128, num_workers=None,
            progress=sys.stderr):
    """Converts both splits; returns {split: (shards written now, shards kept)}."""
    num_workers = num_workers or multiprocessing.cpu_count()
    result = {}
    for split, shards in (("train", train_shards), ("validation", validation_shards)):
        items, synsets = list_split(raw_data_dir, split)
        if shards > len(items):
            raise records.InputError(f"{split}: {shards} shards for only {len(items)} images")
        label_of = {s: k + 1 for k, s in enumerate(synsets)}
        folder = os.path.join(out_dir, split)
        os.makedirs(folder, exist_ok=True)
        jobs, kept, counts = [], 0, {}
        for k, (start, end) in enumerate(shard_ranges(len(items), shards)):
            name = f"{split}-{k:05d}-of-{shards:05d}"
            counts[name] = end - start
            if os.path.exists(os.path.join(folder, name)):
                kept += 1
                continue
            jobs.append((os.path.join(folder, name), items[start:end], label_of))
        total = sum(len(j[1]) for j in jobs)
        done, start_time = 0, time.time()
        context = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe
        with context.Pool(num_workers) as pool:
            for _, n in pool.imap_unordered(_write_shard, jobs):
                done += n
                _progress(progress, split, done, total, start_time)
        if progress and jobs:
            progress.write("\n")
        records.write_counts(out_dir, split, counts)
        result[split] = (len(jobs), kept)
    return result


def _progress(stream, split, done, total, start_time):
    if not stream:
        return
    elapsed = max(time.time() - start_time, 1e-6)
    rate = done / elapsed
    eta = (total - done) / rate if rate > 0 else 0
    width = 30
    filled = int(width * done / max(total, 1))
    stream.write(f"\r{split:10s} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} images "
                 f"{rate:6.1f} img/s ETA {int(eta) // 60:d}:{int(eta) % 60:02d}")
    stream.flush()
