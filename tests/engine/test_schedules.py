"""Learning rates at and around every boundary against the recipe's formula, written out here."""
import math

import numpy as np
import pytest
import tensorflow as tf

from engine import schedules

pytestmark = pytest.mark.smoke


def recipe_formula(step, initial_lr, steps_per_epoch, warmup_epochs):
    warmup = warmup_epochs * steps_per_epoch
    if step < warmup:
        return initial_lr * step / warmup
    epoch = step // steps_per_epoch
    factor = 0.001 if epoch >= 80 else 0.01 if epoch >= 60 else 0.1 if epoch >= 30 else 1.0
    return initial_lr * factor


@pytest.mark.parametrize("steps_per_epoch,warmup", [(1251, 5), (100, 0), (7, 3)])
def test_recipe_schedule_at_every_boundary(steps_per_epoch, warmup):
    boundaries = [0, warmup * steps_per_epoch] + [e * steps_per_epoch for e in (30, 60, 80, 90)]
    steps = sorted({max(0, b + d) for b in boundaries for d in (-2, -1, 0, 1, 2)})
    lr = schedules.build("step", initial_lr=0.28, steps_per_epoch=steps_per_epoch,
                          warmup_epochs=warmup, total_epochs=90)
    for step in steps:
        np.testing.assert_allclose(float(lr(step)),
                                   recipe_formula(step, 0.28, steps_per_epoch, warmup),
                                   rtol=1e-6, atol=1e-9, err_msg=f"step {step}")


def test_cosine_schedule_warms_up_then_decays_to_zero():
    lr = schedules.build("cosine", initial_lr=0.1, steps_per_epoch=10, warmup_epochs=2,
                          total_epochs=12)
    assert float(lr(0)) == 0.0
    np.testing.assert_allclose(float(lr(10)), 0.05, rtol=1e-6)
    np.testing.assert_allclose(float(lr(20)), 0.1, rtol=1e-6)
    np.testing.assert_allclose(float(lr(70)), 0.05 * (1 + math.cos(math.pi * 0.5)), rtol=1e-6)
    np.testing.assert_allclose(float(lr(120)), 0.0, atol=1e-9)


def test_poly_schedule_is_mlperfs_polynomial_decay_after_the_warm_up():
    """After the warm-up, tf.compat.v1.train.polynomial_decay (power 2, end 1e-4) of the steps
    past it over total - warm-up + 1 steps (MLPerf's lars_util): an independent implementation
    of the same formula."""
    lr = schedules.build("poly", initial_lr=2.0, steps_per_epoch=10, warmup_epochs=2,
                          total_epochs=12)
    for step in (0, 5, 19):
        np.testing.assert_allclose(float(lr(step)), 2.0 * step / 20, rtol=1e-6)
    for step in (20, 21, 57, 100, 119, 120, 130):
        decayed = tf.compat.v1.train.polynomial_decay(2.0, step - 20, 101, end_learning_rate=1e-4,
                                                      power=2.0)
        np.testing.assert_allclose(float(lr(step)), float(decayed()), rtol=1e-6, atol=1e-8,
                                   err_msg=f"step {step}")
    small = schedules.build("poly", initial_lr=5e-5, steps_per_epoch=10, warmup_epochs=0,
                            total_epochs=1)
    np.testing.assert_allclose(float(small(11)), 5e-5, rtol=1e-6)  # never rises to 1e-4
