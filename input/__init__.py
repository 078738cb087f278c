"""Input modules: files to (images, labels) batches. Knows nothing of models or flags.

    data = input.build("imagenet", dataset_dir="/data/imagenet/tf_records", image_size=224)
    train = data.train_dataset(batch_size=64, shard_index=rank, num_shards=size, seed=1)
    evaluation = data.eval_dataset(batch_size=64, shard_index=rank, num_shards=size)
"""
from input.modules import ImageFolder, ImageNetRecords, Synthetic
from input.records import InputError

MODULES = {"imagenet": ImageNetRecords, "folder": ImageFolder, "synthetic": Synthetic}


def build(name, **options):
    """The input module `name` (imagenet, folder or synthetic) built with `options`."""
    if name not in MODULES:
        raise ValueError(f"unknown input {name!r}; expected one of {', '.join(MODULES)}")
    return MODULES[name](**options)


__all__ = ["build", "MODULES", "InputError"]
