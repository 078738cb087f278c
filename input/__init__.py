"""Input modules: files to (images, labels) batches. Knows nothing of models or flags.

    data = input.build("imagenet", dataset_dir="/data/imagenet/tf_records", image_size=224)
    train = data.train_dataset(batch_size=64, shard_index=rank, num_shards=size, seed=1)
    evaluation = data.eval_dataset(batch_size=64, shard_index=rank, num_shards=size)

The names below load on first use (PEP 562), so that `python -m input.<command>` can hand over
to launch/ (which quiets TensorFlow's start: launch/startup.py) before TensorFlow is imported.
"""
import importlib

_HOMES = {"ImageFolder": "input.modules", "ImageNetRecords": "input.modules",
          "Synthetic": "input.modules", "InputError": "input.records"}


def __getattr__(name):
    if name == "MODULES":
        modules = importlib.import_module("input.modules")
        return {"imagenet": modules.ImageNetRecords, "folder": modules.ImageFolder,
                "synthetic": modules.Synthetic}
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'input' has no attribute {name!r}")


def build(name, **options):
    """The input module `name` (imagenet, folder or synthetic) built with `options`."""
    modules = __getattr__("MODULES")
    if name not in modules:
        raise ValueError(f"unknown input {name!r}; expected one of {', '.join(modules)}")
    return modules[name](**options)


__all__ = ["build", "MODULES", "InputError", "ImageFolder", "ImageNetRecords", "Synthetic"]
