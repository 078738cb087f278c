"""The recipe's TFRecord format: listing shards, counting records, parsing, finding bad records.

Features: `image/encoded` (JPEG bytes) and `image/class/label` (int64, 1-based: label 1 is class
0). Record counts are cached next to the data in `<subset>.counts.json` (the converter writes it;
otherwise the first count writes it when the folder is writable, else a per-user cache).
"""
import glob
import hashlib
import json
import os
import re

import tensorflow as tf

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}
COUNTS_FILE = "{subset}.counts.json"


class InputError(ValueError):
    """Bad input data; the message names the file (and record) at fault."""


def list_shards(dataset_dir, subset):
    """Sorted `<dataset_dir>/<subset>/<subset>-*` files; InputError if none."""
    folder = os.path.join(dataset_dir, subset)
    if not os.path.isdir(folder):
        raise InputError(f"split directory {folder} does not exist")
    files = sorted(f for f in glob.glob(os.path.join(folder, f"{subset}-*"))
                   if not f.endswith(".json") and os.path.isfile(f))
    if not files:
        raise InputError(f"split directory {folder} holds no {subset}-* TFRecord files")
    return files


def _count_one(path):
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path):
            count += 1
    except tf.errors.DataLossError:
        raise InputError(f"{path}: truncated or corrupt TFRecord after record {count}") from None
    return count


def _cache_locations(dataset_dir, subset):
    yield os.path.join(dataset_dir, subset, COUNTS_FILE.format(subset=subset))
    key = hashlib.sha256(os.path.abspath(os.path.join(dataset_dir, subset)).encode()).hexdigest()
    cache = os.environ.get("DENSENET_CTL_CACHE",
                           os.path.join(os.path.expanduser("~"), ".cache", "densenet-ctl"))
    yield os.path.join(cache, "counts", f"{subset}-{key[:16]}.json")


def record_counts(dataset_dir, subset, files):
    """{file base name: record count}, counted once and cached; recounted when a file's size or
    modification time changed since."""
    stats = {os.path.basename(f): [os.path.getsize(f), int(os.path.getmtime(f))] for f in files}
    cached = {}
    for location in _cache_locations(dataset_dir, subset):
        try:
            with open(location) as f:
                cached = json.load(f)
            break
        except (OSError, ValueError):
            continue
    counts, changed = {}, False
    for path in files:
        name = os.path.basename(path)
        entry = cached.get(name)
        if isinstance(entry, dict) and entry.get("stat") == stats[name]:
            counts[name] = entry["count"]
        else:
            counts[name] = _count_one(path)
            changed = True
    if changed:
        write_counts(dataset_dir, subset, {n: counts[n] for n in counts}, stats)
    return counts


def write_counts(dataset_dir, subset, counts, stats=None):
    """Stores the counts sidecar (the converter calls this too)."""
    folder = os.path.join(dataset_dir, subset)
    if stats is None:
        stats = {n: [os.path.getsize(os.path.join(folder, n)),
                     int(os.path.getmtime(os.path.join(folder, n)))] for n in counts}
    payload = {n: {"count": c, "stat": stats[n]} for n, c in counts.items()}
    for location in _cache_locations(dataset_dir, subset):
        try:
            os.makedirs(os.path.dirname(location), exist_ok=True)
            tmp = f"{location}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(payload, f, indent=0, sort_keys=True)
            os.replace(tmp, location)
            return location
        except OSError:
            continue
    return None


def parse(serialized, path, index, num_classes):
    """-> (encoded bytes, 0-based int32 label). A label outside 1..num_classes fails with the
    file and record named in the error."""
    features = tf.io.parse_single_example(serialized, FEATURES)
    label = features["image/class/label"]
    ok = tf.logical_and(label >= 1, label <= num_classes)
    check = tf.debugging.Assert(
        ok, [_LABEL_CHECK, label, f"outside 1..{num_classes} in", path, "record", index],
        summarize=1)
    with tf.control_dependencies([check]):
        label = tf.cast(label - 1, tf.int32)
    return features["image/encoded"], label


_LABEL_CHECK = "input error: label"


def label_error(error):
    """The sentence of `parse`'s label check from a pipeline error, or None if it is not one.
    tf.debugging.Assert prints its data as [item] [item] ...; this joins them back. Raised
    inside a tf.function (a loop of steps) the check's line comes after "Graph execution
    error:" and the node's name."""
    line = next((line for line in str(error).split("\n") if _LABEL_CHECK in line), None)
    if line is None:
        return None
    items = re.findall(r"\[([^\[\]]*)\]", line)
    items = items[next(i for i, item in enumerate(items) if _LABEL_CHECK in item):]
    text = " ".join(i.strip().removeprefix("b'").strip("'\"") for i in items)
    return text.replace("input error: ", "")


def one_line(error):
    """The first useful line of a TensorFlow error message."""
    text = getattr(error, "message", None) or str(error)
    for line in text.splitlines():
        line = line.strip()
        if line in ("Graph execution error:", "") or line.startswith("Detected at node"):
            continue
        if not line.startswith("[[") and "Traceback" not in line:
            return line.split(" [Op:")[0].split("\t")[0][:300]
    return type(error).__name__
