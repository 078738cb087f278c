"""Learning-rate schedules, computed in the graph from the global step (0-based: the number of
updates already applied). `initial_lr` is used as given, never rescaled by batch size."""
import math

import tensorflow as tf

NAMES = ("step", "cosine", "poly")
RECIPE_BOUNDARIES = ((30, 0.1), (60, 0.01), (80, 0.001))


def recipe_step(step, initial_lr, steps_per_epoch, warmup_epochs, boundaries=RECIPE_BOUNDARIES):
    """The recipe's: initial_lr * step / (warmup_epochs * steps_per_epoch) while warming up,
    then initial_lr x 1, x0.1 from epoch 30, x0.01 from 60, x0.001 from 80."""
    step = tf.cast(step, tf.float64)
    epoch = tf.floor(step / steps_per_epoch)
    multiplier = tf.constant(1.0, tf.float64)
    for boundary_epoch, value in boundaries:
        multiplier = tf.where(epoch >= boundary_epoch, tf.constant(value, tf.float64), multiplier)
    return _with_warmup(step, initial_lr * multiplier, initial_lr, warmup_epochs * steps_per_epoch)


def cosine(step, initial_lr, steps_per_epoch, warmup_epochs, total_epochs):
    """Linear warm-up as the recipe's, then half a cosine from initial_lr to 0 at the end."""
    step = tf.cast(step, tf.float64)
    warmup_steps = float(warmup_epochs * steps_per_epoch)
    total_steps = float(total_epochs * steps_per_epoch)
    progress = tf.clip_by_value((step - warmup_steps) / max(total_steps - warmup_steps, 1.0),
                                0.0, 1.0)
    lr = 0.5 * initial_lr * (1.0 + tf.cos(math.pi * progress))
    return _with_warmup(step, lr, initial_lr, warmup_steps)


def poly(step, initial_lr, steps_per_epoch, warmup_epochs, total_epochs, power=2.0,
         end_lr=1e-4):
    """Linear warm-up as the recipe's, then polynomial decay towards end_lr, as MLPerf's
    ResNet-50 LARS reference (mlcommons/training image_classification/tensorflow2/lars_util.py:
    PolynomialDecay of power 2 to 1e-4 over total_steps - warmup_steps + 1 steps):
    end_lr + (initial_lr - end_lr) * (1 - (step - warmup_steps) / decay_steps) ** power.
    end_lr is never above initial_lr."""
    step = tf.cast(step, tf.float64)
    warmup_steps = float(warmup_epochs * steps_per_epoch)
    decay_steps = max(float(total_epochs * steps_per_epoch) - warmup_steps + 1.0, 1.0)
    end_lr = min(end_lr, initial_lr)
    progress = tf.clip_by_value((step - warmup_steps) / decay_steps, 0.0, 1.0)
    lr = end_lr + (initial_lr - end_lr) * tf.pow(1.0 - progress, power)
    return _with_warmup(step, lr, initial_lr, warmup_steps)


def _with_warmup(step, lr, initial_lr, warmup_steps):
    """float32 `lr`, replaced by the recipe's linear warm-up initial_lr * step / warmup_steps
    during the first warmup_steps steps. step: float64."""
    if warmup_steps > 0:
        lr = tf.where(step < float(warmup_steps), initial_lr * step / float(warmup_steps), lr)
    return tf.cast(lr, tf.float32)


def build(name: str, *, initial_lr: float, steps_per_epoch: int, warmup_epochs: float,
          total_epochs: int):
    """A function global step -> float32 learning rate."""
    if name == "step":
        return lambda step: recipe_step(step, initial_lr, steps_per_epoch, warmup_epochs)
    if name == "cosine":
        return lambda step: cosine(step, initial_lr, steps_per_epoch, warmup_epochs, total_epochs)
    if name == "poly":
        return lambda step: poly(step, initial_lr, steps_per_epoch, warmup_epochs, total_epochs)
    raise ValueError(f"unknown lr schedule {name!r}; expected one of {', '.join(NAMES)}")
