"""--clip_grad_norm: the step scales the all-reduced gradients to the global norm C when theirs is
larger, before the update, and records the norm before clipping; against gradients taken with a
separate tape and clipped in numpy."""
import numpy as np
import pytest
import tensorflow as tf

import nets
from engine import distributed, optimizers
from engine.step import TrainStep

pytestmark = pytest.mark.smoke


def one_step(clip, lr=0.5):
    """(weights before, reference gradients, weights after, the step's metrics)."""
    net = nets.build("densenet", num_classes=4, blocks=(1, 1), growth_rate=4, stem_filters=8,
                     seed=3)
    step = TrainStep(net=net, optimizer=optimizers.build("sgd", momentum=0.0),
                     backend=distributed.SingleProcess(), lr_fn=lambda s: tf.constant(lr),
                     clip_grad_norm=clip)
    step.build()
    images = tf.random.stateless_uniform([4, 32, 32, 3], (1, 2))
    labels = tf.constant([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        logits = net(images, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    grads = [g.numpy().astype(np.float64) for g in tape.gradient(loss, step.variables)]
    before = [v.numpy().astype(np.float64) for v in step.variables]
    step(images, labels)
    after = [v.numpy() for v in step.variables]
    return before, grads, after, step.read_metrics()


@pytest.mark.parametrize("clip", [None, 1e-3, 1e3])
def test_gradients_are_clipped_to_the_global_norm_before_the_update(clip):
    before, grads, after, metrics = one_step(clip)
    norm = np.sqrt(sum(np.sum(g * g) for g in grads))
    scale = min(1.0, clip / norm) if clip else 1.0
    assert (scale < 1.0) == (clip == 1e-3)  # one clip that bites, one that does not
    for w, g, got in zip(before, grads, after):
        np.testing.assert_allclose(got, w - 0.5 * scale * g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
