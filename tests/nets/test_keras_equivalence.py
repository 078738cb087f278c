"""Our DenseNets against keras.applications holding the same weights, on photographs."""
import numpy as np
import pytest
import tensorflow as tf

import nets
from tests import helpers
from tests.nets import keras_reference as ref

SIZE = 96  # any size >= 32 exercises every layer; 224 only costs time


def assert_close(ours, theirs, rtol):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = np.abs(theirs).max()
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale)


@pytest.fixture(scope="module")
def images():
    return tf.constant(helpers.real_images(SIZE, count=4))


@pytest.mark.smoke
@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet201"])
def test_logits_match_keras_in_inference_and_training(name, images):
    model = ref.keras_densenet(name, SIZE, seed=1)
    net = nets.build(name)
    ref.copy_keras_to_net(model, net)

    assert_close(net(images, training=False), model(images, training=False), rtol=1e-4)
    keras_bns = ref.keras_bn_layers(model)
    before = {name: np.array(bn.moving_variance) for name, bn in keras_bns.items()}
    assert_close(net(images, training=True), model(images, training=True), rtol=1e-4)
    # Both took one training step's BN update: moving statistics must agree too.
    for bn in net.batch_norms():
        name = bn.layer_name.replace("/", "_")
        theirs = keras_bns[name]
        assert_close(bn.moving_mean, theirs.moving_mean, rtol=1e-4)
        assert_close(bn.moving_variance,
                     ref.unbiased_moving_variance(theirs, before[name], len(images)), rtol=1e-4)


@pytest.mark.smoke
def test_gradients_of_a_dense_block_match_keras():
    """conv3 (12 dense layers) in training mode, on the same input: ours against the Keras
    model's own layers chained as keras.applications chains them (x = concat([x, layer(x)])).

    One block, not the whole net: over 120 layers float32 noise flips a few ReLUs, and the
    gradients of the affected units then differ by more than any tolerance worth testing.
    """
    model = ref.keras_densenet("densenet121", SIZE, seed=2)
    net = nets.build("densenet121")
    ref.copy_keras_to_net(model, net)
    rng = np.random.default_rng(0)
    block_input = tf.constant(rng.normal(size=(4, 12, 12, 128)), tf.float32)
    probe = tf.constant(rng.normal(size=(4, 12, 12, 128 + 12 * 32)), tf.float32)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(block_input)
        our_loss = tf.reduce_sum(net.dense_block(1, block_input, True)[0] * probe)
        x = block_input
        for i in range(1, 13):
            layer = lambda suffix: model.get_layer(f"conv3_block{i}_{suffix}")  # noqa: E731
            h = tf.nn.relu(layer("0_bn")(x, training=True))
            h = tf.nn.relu(layer("1_bn")(layer("1_conv")(h), training=True))
            x = tf.concat([x, layer("2_conv")(h)], axis=3)
        their_loss = tf.reduce_sum(x * probe)
    assert_close(our_loss, their_loss, rtol=1e-5)

    ours, theirs = [block_input], [block_input]
    for dense_layer in net.dense_blocks[1]:
        for layer in (dense_layer.bn0, dense_layer.conv1, dense_layer.bn1, dense_layer.conv2):
            ours += layer.trainable_variables_in_keras_order()
            theirs += [ref.as_tf_variable(w)
                       for w in model.get_layer(layer.layer_name).trainable_weights]
    assert len(ours) == len(theirs) == 1 + 12 * 6
    for mine, g_ours, g_theirs in zip(ours, tape.gradient(our_loss, ours),
                                      tape.gradient(their_loss, theirs)):
        assert g_ours.shape == g_theirs.shape, mine.name
        assert_close(g_ours, g_theirs, rtol=1e-5)
