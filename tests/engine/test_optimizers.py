"""Our fused-op optimizers against Keras' with the recipe's settings, several steps on a small
model. Keras 2 (tf_keras on the current lane, tf.keras on TF 2.15) is the optimizer the recipe
ran; on the current lane Keras 3's is checked too."""
import numpy as np
import pytest
import tensorflow as tf

from engine import optimizers

pytestmark = pytest.mark.smoke


def keras2():
    try:
        import tf_keras
        return tf_keras
    except ImportError:
        return tf.keras  # TF 2.15: tf.keras is Keras 2


def keras3():
    import keras
    return keras if int(keras.__version__.split(".")[0]) >= 3 else None


def reference(name, lr, legacy):
    if legacy:
        k = keras2().optimizers.legacy
        return {"sgd": lambda: k.SGD(lr, momentum=0.9, nesterov=True),
                "adam": lambda: k.Adam(lr, epsilon=1e-2),
                "rmsprop": lambda: k.RMSprop(lr, rho=0.9, epsilon=1e-2)}[name]()
    k = keras3()
    return {"sgd": lambda: k.optimizers.SGD(lr, momentum=0.9, nesterov=True),
            "adam": lambda: k.optimizers.Adam(lr, epsilon=1e-2),
            "rmsprop": lambda: k.optimizers.RMSprop(lr, rho=0.9, epsilon=1e-2)}[name]()


def gradients(variables, step):
    """A small least-squares model: different gradients every step."""
    rng = np.random.default_rng(step)
    x = tf.constant(rng.normal(size=(8, 5)), tf.float32)
    y = tf.constant(rng.normal(size=(8, 3)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(tf.matmul(x, variables[0]) + variables[1] - y))
    return tape.gradient(loss, variables)


# Keras 3's RMSprop puts epsilon inside the sqrt (another optimizer at epsilon 1e-2), so it is
# compared with Keras 2's only, the recipe's.
CASES = [(name, True) for name in ("sgd", "adam", "rmsprop")] + \
    ([("sgd", False), ("adam", False)] if keras3() else [])


@pytest.mark.parametrize("name,legacy", CASES,
                         ids=[f"{n}-{'keras2' if legacy else 'keras3'}" for n, legacy in CASES])
def test_updates_match_keras(name, legacy):
    init = [np.random.default_rng(9).normal(size=(5, 3)).astype(np.float32),
            np.zeros(3, np.float32)]
    ours = [tf.Variable(v) for v in init]
    theirs = [tf.Variable(v) for v in init]
    optimizer = optimizers.build(name)
    optimizer.build(ours)
    keras_optimizer = reference(name, 0.05, legacy)
    for step in range(6):
        optimizer.apply(gradients(ours, step), 0.05)
        keras_optimizer.apply_gradients(zip(gradients(theirs, step), theirs))
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == 6
    assert not np.allclose(ours[0].numpy(), init[0])  # it did move


def test_decoupled_weight_decay_shrinks_before_the_update():
    v = tf.Variable([1.0, -2.0])
    optimizer = optimizers.build("sgd", decoupled_weight_decay=0.1)
    optimizer.build([v])
    optimizer.apply([tf.zeros(2)], 0.5)  # zero gradient: only the decay acts
    np.testing.assert_allclose(v.numpy(), [1.0 * (1 - 0.05), -2.0 * (1 - 0.05)], rtol=1e-6)


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        optimizers.build("lamb")


def lars_numpy(w, v, g, lr, *, adapted, eta, wd, eps, momentum):
    """LARS as arXiv:1708.03888 writes it (tf.contrib.opt.LARSOptimizer's formula), in numpy
    float64: trust = eta ||w|| / (||g|| + wd ||w|| + eps), v = m v + lr trust (g + wd w)."""
    if adapted:
        w_norm, g_norm = np.linalg.norm(w), np.linalg.norm(g)
        trust = eta * w_norm / (g_norm + wd * w_norm + eps) if w_norm > 0 and g_norm > 0 else 1.0
        g = g + wd * w
        lr = lr * trust
    v = momentum * v + lr * g
    return w - v, v


@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_lars_matches_its_formula_in_numpy_over_several_steps(eps):
    """A kernel takes the trust ratio and the decay, a bias neither; 6 steps of 2 gradients."""
    init = [np.random.default_rng(3).normal(size=(5, 3)).astype(np.float32),
            np.full(3, 0.5, np.float32)]
    ours = [tf.Variable(v) for v in init]
    optimizer = optimizers.build("lars", momentum=0.9, eta=0.02, epsilon=eps, weight_decay=5e-4,
                                 excluded=[ours[1]])
    optimizer.build(ours)
    weights = [v.astype(np.float64) for v in init]
    velocities = [np.zeros_like(w) for w in weights]
    for step in range(6):
        lr = 0.5 + 0.1 * step
        grads = gradients(ours, step)
        expected = [lars_numpy(w, v, g.numpy().astype(np.float64), lr, adapted=i == 0, eta=0.02,
                               wd=5e-4, eps=eps, momentum=0.9)
                    for i, (w, v, g) in enumerate(zip(weights, velocities, grads))]
        weights, velocities = [e[0] for e in expected], [e[1] for e in expected]
        optimizer.apply(grads, lr)
        for ours_v, w in zip(ours, weights):
            np.testing.assert_allclose(ours_v.numpy(), w, rtol=1e-6, atol=1e-6)
        for slot, v in zip(optimizer.slot_variables(), velocities):
            np.testing.assert_allclose(slot.numpy(), v, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours[0].numpy(), init[0])


def test_lars_leaves_a_zero_weight_to_the_plain_rate():
    """||w|| = 0 (a kernel initialized to zeros): trust ratio 1, as the reference does."""
    v = tf.Variable(tf.zeros(4))
    optimizer = optimizers.build("lars", momentum=0.0, eta=0.001, weight_decay=1e-4)
    optimizer.build([v])
    optimizer.apply([tf.constant([1.0, 2.0, 3.0, 4.0])], 0.1)
    np.testing.assert_allclose(v.numpy(), [-0.1, -0.2, -0.3, -0.4], rtol=1e-6)
