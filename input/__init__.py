"""Input modules: files to (images, labels) batches. Knows nothing of models or flags.

    data = input.build("imagenet", dataset_dir="/data/imagenet/tf_records",
                       options=input.InputOptions(image_size=224))
    train = data.train_dataset(batch_size=64, worker=rank, workers=size, seed=1)
    evaluation = data.eval_dataset(batch_size=64, worker=rank, workers=size)
"""
from input.modules import ImageFolder, ImageNetRecords, Synthetic
from input.options import FIELDS, InputOptions
from input.records import InputError

MODULES = {"imagenet": ImageNetRecords, "folder": ImageFolder, "synthetic": Synthetic}


def build(name, *, options=None, **arguments):
    """The input module `name` (imagenet, folder or synthetic). `options` an InputOptions; or
    its fields given loose among `arguments` (image_size=32, ...), for short calls."""
    if name not in MODULES:
        raise ValueError(f"unknown input {name!r}; expected one of {', '.join(MODULES)}")
    loose = {k: arguments.pop(k) for k in FIELDS if k in arguments}
    if options is None:
        options = InputOptions(**loose)
    elif loose:
        raise ValueError(f"give {', '.join(loose)} inside options, not beside it")
    return MODULES[name](options=options, **arguments)


__all__ = ["build", "MODULES", "InputError", "InputOptions", "ImageFolder", "ImageNetRecords",
           "Synthetic"]
