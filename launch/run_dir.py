"""A finished (or running) training run, read back from its model_dir: the net as flags.txt
describes it, restored from a checkpoint, and what the input knows of its classes."""
import json
import os

import tensorflow as tf
from absl import flags

import nets
from engine import best, checkpoints, files
from launch import plan, train_flags
from launch.errors import CommandError


class RunDirError(CommandError):
    """A run directory that cannot be read back; the message names what is missing."""


def read_flags(path: str) -> flags.FlagValues:
    """The run's flags: flags.txt parsed by absl with launch.train's own definitions (not
    validated: the run's data or checkpoints may have moved since)."""
    if not os.path.isfile(path):
        raise RunDirError(f"{path}: no such file (the run's flags)")
    values = flags.FlagValues()
    train_flags.define(values, validate=False)
    try:
        values(["run_dir", f"--flagfile={path}"])
    except flags.Error as e:
        raise RunDirError(f"{path}: {e}") from None
    return values


MACHINE_FILE = "machine.json"


def write_machine(model_dir: str, facts: dict) -> None:
    """What the run's device offered (launch.train writes it at start, rank 0): read back by
    launch.profile, whose advice must fit the device that ran, not the one reading."""
    files.write_whole(os.path.join(model_dir, MACHINE_FILE), json.dumps(facts, indent=1))


def read_machine(model_dir: str):
    """The run's machine.json as a dict, or None (a run of an older engine)."""
    path = os.path.join(model_dir, MACHINE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load(model_dir, checkpoint=None, *, ema=False):
    """(net restored from `checkpoint` or the run's latest, run flags, class names or None,
    checkpoint path). With `ema`, the net holds the run's weight average instead."""
    run_flags = read_flags(os.path.join(model_dir, "flags.txt"))
    planned = plan.from_flags(run_flags)  # flags.txt holds the run's settled dtype and seed
    net = nets.build(planned.net.model, **planned.net_options())
    path = checkpoint or tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if not path:
        raise RunDirError(f"{model_dir}/checkpoints holds no checkpoint")
    try:
        if ema:
            checkpoints.restore_averaged_net(net, path)
        else:
            checkpoints.restore_net(net, path)
    except checkpoints.CheckpointError as e:
        raise RunDirError(str(e)) from None
    return net, run_flags, class_names(run_flags), path


def best_checkpoint(model_dir, *, checkpoint=None):
    """(path, whether it is the weight average that scored) of the run's --keep_best
    checkpoint."""
    if checkpoint:
        raise RunDirError("--best and --checkpoint each name a checkpoint: give one")
    kept = best.read(model_dir)
    if kept is None:
        raise RunDirError(f"{model_dir} kept no best checkpoint (train with --keep_best)")
    return kept["checkpoint"], best.uses_weight_average(kept["metric"])


def class_names(run_flags):
    """Class names from the data set the run used, when it has them."""
    meta = os.path.join(run_flags.dataset_dir, "dataset.json")
    if os.path.exists(meta):
        with open(meta) as f:
            return json.load(f).get("class_names")
    train_dir = os.path.join(run_flags.dataset_dir, run_flags.train_subset)
    if run_flags.input == "folder" and os.path.isdir(train_dir):
        return sorted(d for d in os.listdir(train_dir)
                      if os.path.isdir(os.path.join(train_dir, d)))
    return None
