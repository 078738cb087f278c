"""Memory-efficient dense blocks and bfloat16 compute, against the plain float32 net."""
import numpy as np
import pytest
import tensorflow as tf

import nets
from tests import helpers

pytestmark = pytest.mark.smoke


def loss_and_grads(net, images, probe):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(images, training=True) * probe)
    return loss, tape.gradient(loss, net.trainable_variables)


@pytest.mark.parametrize("in_function", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("dropout_rate", [0.0, 0.2])
def test_recompute_gives_the_plain_gradients_and_one_bn_update(in_function, dropout_rate):
    # Two blocks and the transition between them: recompute wraps each dense layer alike, so
    # DenseNet-121's 58 of them prove nothing more than these 5.
    images = tf.constant(helpers.real_images(64, count=4))
    probe = tf.constant(np.random.default_rng(0).normal(size=(4, 10)), tf.float32)
    options = dict(seed=4, kernel_initializer="he_normal", dropout_rate=dropout_rate,
                   num_classes=10, blocks=(3, 2), growth_rate=8, stem_filters=16)
    plain = nets.build("densenet", **options)
    recomputed = nets.build("densenet", recompute=True, **options)
    step = tf.function(loss_and_grads) if in_function else loss_and_grads

    for _ in range(2):  # two steps: the second starts from the moving averages of the first
        plain_loss, plain_grads = step(plain, images, probe)
        loss, grads = step(recomputed, images, probe)
        np.testing.assert_allclose(loss, plain_loss, rtol=1e-5)
        # The two nets sum each feature's gradient in another order (a list of concatenations
        # against one growing concatenation), so they agree to float32 rounding, measured on
        # the scale of the layer's gradients: the stem BN's gamma gradient is a sum of terms
        # of the size of its beta gradient (~17) that cancels to ~1e-3.
        layer_scale = {}
        for v, want in zip(plain.trainable_variables, plain_grads):
            layer = v.name.rsplit("/", 1)[0]
            layer_scale[layer] = max(layer_scale.get(layer, 0.0), np.abs(want.numpy()).max())
        for v, g, want in zip(plain.trainable_variables, grads, plain_grads):
            np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-5,
                                       atol=1e-5 * layer_scale[v.name.rsplit("/", 1)[0]],
                                       err_msg=v.name)
        for mine, want in zip(recomputed.moving_statistics(), plain.moving_statistics()):
            np.testing.assert_allclose(mine.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)


def test_recomputed_bn_moves_its_averages_once_per_training_call():
    """m' = 0.99 m + 0.01 batch mean and v' = 0.99 v + 0.01 unbiased batch variance, once per
    call, for a BN inside the recomputed bottleneck, although the backward pass runs it again."""
    net = nets.build("densenet", num_classes=3, blocks=(2,), growth_rate=4, stem_filters=8,
                     recompute=True)
    images = tf.constant(helpers.real_images(32, count=2))
    # The first dense layer's input (pool1's output), computed here with plain TF ops.
    stem = tf.nn.conv2d(tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]]),
                        net.stem_conv.kernel, 2, "VALID")
    mean, variance = tf.nn.moments(stem, axes=[0, 1, 2])
    stem = tf.nn.relu((stem - mean) / tf.sqrt(variance + 1.001e-5))  # gamma 1, beta 0
    pool1 = tf.nn.max_pool2d(tf.pad(stem, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
    pool1 = pool1.numpy().astype(np.float64)
    batch_mean, batch_var = pool1.mean(axis=(0, 1, 2)), pool1.var(axis=(0, 1, 2), ddof=1)

    bn = net.dense_blocks[0][0].bn0
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(net(images, training=True))
    grads = tape.gradient(loss, net.trainable_variables)  # runs the bottleneck again
    assert all(g is not None for g in grads)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.01 * batch_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.99 + 0.01 * batch_var,
                               rtol=1e-4, atol=1e-6)
    before = [v.numpy().copy() for v in net.moving_statistics()]
    net(images, training=False)
    for old, v in zip(before, net.moving_statistics()):
        np.testing.assert_array_equal(old, v.numpy())  # inference leaves them alone


def test_bfloat16_keeps_float32_variables_and_agrees_on_top1():
    images = tf.constant(helpers.real_images(96, count=8))
    options = dict(seed=5, kernel_initializer="he_normal")
    full = nets.build("densenet121", **options)
    half = nets.build("densenet121", compute_dtype="bfloat16", **options)
    assert all(v.dtype == tf.float32
               for v in list(half.trainable_variables) + half.moving_statistics())
    want, got = full(images, training=False), half(images, training=False)
    assert got.dtype == tf.float32
    # bfloat16 really was used (8 bits of mantissa leave a visible difference) ...
    assert np.abs(got.numpy() - want.numpy()).max() > 1e-4
    # ... and yet every image gets the same class.
    np.testing.assert_array_equal(np.argmax(got, axis=1), np.argmax(want, axis=1))
