"""A finished (or running) training run, read back from its model_dir: the net as flags.txt
describes it, restored from a checkpoint, and what the input knows of its classes."""
import json
import os

import tensorflow as tf

import nets
from engine import checkpoints


class RunDirError(RuntimeError):
    pass


def read_flagfile(path):
    """{flag name: string value} from a flagfile (--name=value lines, --bool / --nobool)."""
    values = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise RunDirError(f"{path}: cannot read the run's flags ({e.strerror})") from None
    for line in lines:
        line = line.strip()
        if not line.startswith("--"):
            continue
        name, has_value, value = line[2:].partition("=")
        if not has_value:  # a boolean: --name or --noname
            name, value = (name[2:], "false") if name.startswith("no") else (name, "true")
        values[name] = value
    return values


def build_net(run_flags):
    """The net the run trained, freshly initialized."""
    options = dict(num_classes=int(run_flags["num_classes"]),
                   bn_epsilon=float(run_flags.get("bn_epsilon", 1.1e-5)),
                   compute_dtype={"fp32": "float32", "bf16": "bfloat16"}[
                       run_flags.get("dtype", "fp32")],
                   data_format=run_flags.get("data_format", "NHWC"))
    if run_flags["model"] == "densenet":
        options.update(blocks=[int(b) for b in run_flags["blocks"].split(",")],
                       growth_rate=int(run_flags["growth_rate"]),
                       stem_filters=int(run_flags["stem_filters"]))
    return nets.build(run_flags["model"], **options)


def load(model_dir, checkpoint=None):
    """(net restored from `checkpoint` or the run's latest, run flags, class names or None)."""
    run_flags = read_flagfile(os.path.join(model_dir, "flags.txt"))
    net = build_net(run_flags)
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not path:
        raise RunDirError(f"{model_dir}/checkpoints holds no checkpoint")
    try:
        checkpoints.restore_net(net, path)
    except checkpoints.CheckpointError as e:
        raise RunDirError(str(e)) from None
    return net, run_flags, class_names(run_flags), path


def class_names(run_flags):
    """Class names from the data set the run used, when it has them."""
    dataset_dir = run_flags.get("dataset_dir", "")
    meta = os.path.join(dataset_dir, "dataset.json")
    if os.path.exists(meta):
        with open(meta) as f:
            return json.load(f).get("class_names")
    train_dir = os.path.join(dataset_dir, run_flags.get("train_subset", "train"))
    if run_flags.get("input") == "folder" and os.path.isdir(train_dir):
        return sorted(d for d in os.listdir(train_dir)
                      if os.path.isdir(os.path.join(train_dir, d)))
    return None
