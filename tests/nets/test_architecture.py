"""Shapes, parameter counts and names of the DenseNet zoo."""
import numpy as np
import pytest
import tensorflow as tf

import nets

pytestmark = pytest.mark.smoke

# Published counts (keras.applications count_params: trainable + BN moving statistics).
COUNTS = {"densenet121": (8_062_504, 7_978_856), "densenet161": (28_900_936, 28_681_000),
          "densenet169": (14_307_880, None), "densenet201": (20_242_984, None),
          "densenet264": (33_736_232, None)}


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts(name):
    net = nets.build(name)
    total, trainable = COUNTS[name]
    assert nets.parameter_count(net) == total
    if trainable:
        assert nets.parameter_count(net, trainable_only=True) == trainable
    assert sum(int(np.prod(v.shape)) for v in net.trainable_variables) == \
        nets.parameter_count(net, trainable_only=True)


def test_variable_names_follow_keras_applications():
    net = nets.build("densenet121")
    names = {v.name for v in net.variables}
    for expected in ("conv1/conv/kernel:0", "conv1/bn/gamma:0", "conv2_block1_0_bn/moving_mean:0",
                     "conv2_block1_1_conv/kernel:0", "conv2_block6_2_conv/kernel:0",
                     "pool2_conv/kernel:0", "pool4_bn/beta:0", "conv5_block16_2_conv/kernel:0",
                     "bn/moving_variance:0", "predictions/kernel:0", "predictions/bias:0"):
        assert expected in names


def test_variable_roles_partition_the_weights():
    net = nets.build("densenet121")
    roles = net.kernels() + net.biases() + net.bn_parameters()
    assert len({id(v) for v in roles}) == len(roles)
    assert {id(v) for v in roles} == {id(v) for v in net.trainable_variables}
    assert all(not v.trainable for v in net.moving_statistics())
    assert len(net.kernels()) == 121  # 120 convolutions + the classifier: hence the name


def test_custom_densenet_shapes_and_logits_dtype():
    net = nets.build("densenet", num_classes=7, blocks=(2, 3), growth_rate=8, stem_filters=16,
                     compression=0.5, bottleneck_width=2, compute_dtype="bfloat16")
    logits = net(tf.zeros([3, 64, 64, 3]), training=False)
    assert logits.shape == (3, 7) and logits.dtype == tf.float32
    # 16 stem + 2*8 -> transition to 16 -> + 3*8 = 40 features before the head.
    assert net.num_features == 40
    assert all(v.dtype == tf.float32 for v in net.variables if v.dtype.is_floating)


def test_reset_classifier_gives_a_fresh_head_and_keeps_the_body():
    net = nets.build("densenet", num_classes=7, blocks=(2, 2), growth_rate=8, stem_filters=16)
    body = [v.numpy() for v in net.trainable_variables_in_order()[:-2]]
    old_head = net.classifier.kernel.numpy()
    net.reset_classifier(3)
    assert net.num_classes == 3 and net(tf.zeros([2, 32, 32, 3])).shape == (2, 3)
    kernel = net.classifier.kernel.numpy()
    assert kernel.shape == (net.num_features, 3) and not np.allclose(kernel[:, :3], old_head[:, :3])
    limit = np.sqrt(6.0 / (net.num_features + 3))  # Keras' Glorot uniform, as every head
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.5 * limit
    assert not np.any(net.classifier.bias.numpy())
    for before, after in zip(body, net.trainable_variables_in_order()[:-2]):
        np.testing.assert_array_equal(before, after.numpy())
    # The new head is what the optimizer sees and what a checkpoint holds.
    assert {id(v) for v in net.trainable_variables_in_order()[-2:]} == \
        {id(net.classifier.kernel), id(net.classifier.bias)}
    assert nets.parameter_count(net) == sum(v.shape.num_elements() for v in net.variables)


def test_bad_options_are_refused_with_the_option_named():
    with pytest.raises(ValueError, match="unknown model 'densenet999'"):
        nets.build("densenet999")
    with pytest.raises(ValueError, match="compute_dtype"):
        nets.build("densenet121", compute_dtype="float16")
    with pytest.raises(ValueError, match="kernel_initializer"):
        nets.build("densenet121", kernel_initializer="zeros")
    with pytest.raises(ValueError, match="growth_rate"):
        nets.build("densenet", blocks=(1,), stem_filters=8)


def test_initializers_have_keras_statistics():
    """Glorot uniform: U(-l, l), l = sqrt(6 / (fan_in + fan_out)); He normal: std
    sqrt(2 / fan_in)."""
    glorot = nets.build("densenet121", kernel_initializer="glorot_uniform")
    he = nets.build("densenet121", kernel_initializer="he_normal", seed=3)
    k = glorot.dense_blocks[2][0].conv2.kernel.numpy()  # [3, 3, 128, 32]
    limit = np.sqrt(6.0 / (9 * 128 + 9 * 32))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.99 * limit
    np.testing.assert_allclose(k.std(), limit / np.sqrt(3), rtol=0.02)
    k = he.dense_blocks[2][0].conv2.kernel.numpy()
    np.testing.assert_allclose(k.std(), np.sqrt(2.0 / (9 * 128)), rtol=0.02)
    # Same seed, same weights; another seed, other weights.
    again = nets.build("densenet121", kernel_initializer="he_normal", seed=3)
    np.testing.assert_array_equal(again.stem_conv.kernel.numpy(), he.stem_conv.kernel.numpy())
    assert not np.array_equal(glorot.stem_conv.kernel.numpy(),
                              nets.build("densenet121", seed=1).stem_conv.kernel.numpy())


def _nchw_problem():
    from launch import hardware
    return hardware.nchw_problem()


# Where oneDNN is off it cannot run; `make test-cpu-kinds` runs it as on a native-bf16 CPU, whose
# oneDNN stays on, so it runs on every machine at least once.
@pytest.mark.cpu_kind
@pytest.mark.skipif(_nchw_problem() is not None, reason=f"NCHW cannot run here: {_nchw_problem()}"
                    f" (launch.train refuses --data_format=NCHW on such a CPU, tested in "
                    f"tests/launch/test_machine_fit.py)")
@pytest.mark.parametrize("in_function", [False, True], ids=["eager", "tf.function"])
def test_nchw_net_computes_what_the_nhwc_net_computes(in_function):
    """NCHW (for GPUs) takes NHWC images too and must give the same logits, gradients and
    moving statistics; on CPU this also guards against TF 2.15's wrong NCHW pooling."""
    options = dict(num_classes=5, blocks=(2, 2), growth_rate=4, stem_filters=8, seed=1)
    nhwc = nets.build("densenet", **options)
    nchw = nets.build("densenet", data_format="NCHW", **options)
    images = tf.random.stateless_normal([2, 32, 32, 3], (7, 7))

    def step(net):
        with tf.GradientTape() as tape:
            logits = net(images, training=True)
            loss = tf.reduce_sum(logits ** 2)
        return logits, tape.gradient(loss, net.trainable_variables)

    step_fn = tf.function(step) if in_function else step
    (want, want_grads), (got, got_grads) = step_fn(nhwc), step_fn(nchw)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    # Scale-invariant BN makes some gradients analytically zero (float noise of 1e-6): compare
    # against the largest gradient of the net, not each tensor's own.
    scale = max(np.abs(w.numpy()).max() for w in want_grads)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5 * scale)
    for g, w in zip(nchw.moving_statistics(), nhwc.moving_statistics()):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nchw(images).numpy(), nhwc(images).numpy(), rtol=1e-5, atol=1e-5)
