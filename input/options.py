"""How a file-backed input module reads and prepares its examples: one frozen value, checked once
when it is made (launch/train_flags' validators call the same checks, so a bad flag and a bad
argument get the same sentence)."""
import dataclasses
from typing import Optional

import tensorflow as tf

from input import augment, preprocessing

AUTOTUNE = tf.data.AUTOTUNE


def _problem(name, value):
    """What is wrong with `value` for the field `name` ("must be ..."), or None."""
    if name == "image_size" and not (isinstance(value, int) and value > 0):
        return f"must be a positive integer, not {value!r}"
    if name == "preprocessing" and value not in preprocessing.STYLES:
        return f"must be one of {', '.join(preprocessing.STYLES)}, not {value!r}"
    if name == "num_parallel_calls" and not (value == AUTOTUNE or value > 0):
        return f"must be -1 (AUTOTUNE) or positive, not {value}"
    if name == "shuffle_buffer" and not value > 0:
        return f"must be a positive integer, not {value}"
    if name == "random_erasing" and not 0 <= value <= 1:
        return f"must be in [0, 1], not {value}"
    if name == "private_threads" and not (value is None or (isinstance(value, int)
                                                            and value > 0)):
        return f"must be a positive integer or None, not {value!r}"
    if name == "randaugment" and not (value is None or isinstance(value, augment.RandAugment)):
        return f"must be an input.augment.RandAugment or None, not {value!r}"
    return None


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """image_size: square side of every image. preprocessing: a preprocessing style (`vendor`,
    `inception`). num_parallel_calls: decode parallelism (-1: AUTOTUNE). deterministic: a
    reproducible order (the stream is then a function of seed and example number).
    shuffle_buffer: examples in the training shuffle buffer. skip_corrupt: leave bad examples
    out (found by one scan) instead of failing. randaugment, random_erasing: per-example
    training augmentations (preprocessing.train_image). private_threads: threads of a pool of
    this input's own (tf.data's private thread pool; None: the process-wide pool, sized to every
    core), so that workers sharing a host do not each take all of its cores."""
    image_size: int = 224
    preprocessing: str = "vendor"
    num_parallel_calls: int = AUTOTUNE
    deterministic: bool = False
    shuffle_buffer: int = 8192
    skip_corrupt: bool = False
    randaugment: Optional[augment.RandAugment] = None
    random_erasing: float = 0.0
    private_threads: Optional[int] = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            problem = _problem(field.name, getattr(self, field.name))
            if problem:
                raise ValueError(f"input option {field.name} {problem}")

    @staticmethod
    def check(name, value):
        """None if `value` is fit for the field `name`, else what is wrong with it, as a phrase
        ("must be ...") to follow the name of the field or of the flag that sets it."""
        return _problem(name, value)


FIELDS = tuple(f.name for f in dataclasses.fields(InputOptions))
