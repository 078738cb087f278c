"""The weight average: its values against a numpy recomputation from the weights after each
step."""
import numpy as np
import pytest
import tensorflow as tf

import nets
from engine import TrainStep, distributed, optimizers
from engine.ema import WeightEma

pytestmark = pytest.mark.smoke


def test_average_equals_numpy_recomputation_after_five_steps():
    net = nets.build("densenet", num_classes=3, blocks=(2, 2), growth_rate=4, stem_filters=8,
                     seed=2)
    optimizer = optimizers.build("sgd")
    average = WeightEma(net, 0.9)
    step = TrainStep(net=net, optimizer=optimizer, backend=distributed.SingleProcess(),
                     lr_fn=lambda s: tf.constant(0.1), ema=average)
    optimizer.build(step.variables)
    sources = net.trainable_variables_in_order() + net.moving_statistics()
    expected = [v.numpy().astype(np.float64) for v in sources]
    for t in range(5):
        images = tf.random.stateless_uniform([4, 32, 32, 3], (t, 0), -1, 1)
        labels = tf.random.stateless_uniform([4], (t, 1), 0, 3, tf.int32)
        step(images, labels)
        decay = min(0.9, (1 + t) / (10 + t))
        expected = [decay * e + (1 - decay) * v.numpy() for e, v in zip(expected, sources)]
    assert len(average.averages) == len(sources) > 30
    moved = 0
    for got, want, source in zip(average.averages, expected, sources):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6, err_msg=source.name)
        moved += not np.allclose(got.numpy(), source.numpy())
    assert moved > len(sources) // 2  # the average lags the weights: it is not a copy


def test_swapped_in_computes_with_the_average_and_gives_the_weights_back():
    net = nets.build("densenet", num_classes=3, blocks=(1,), growth_rate=4, stem_filters=8)
    average = WeightEma(net, 0.5)
    for a in average.averages:
        a.assign(a + 1.0)
    own = [v.numpy() for v in net.variables]
    with average.swapped_in():
        inside = [v.numpy() for v in net.trainable_variables_in_order()]
    for value, a in zip(inside, average.averages):
        np.testing.assert_array_equal(value, a.numpy())
    for before, v in zip(own, net.variables):
        np.testing.assert_array_equal(before, v.numpy())
