"""The loss and top-k with soft targets (mixup/CutMix) against the class-id path and numpy."""
import numpy as np
import pytest
import tensorflow as tf

from engine import losses

CLASSES = 7


def logits_and_labels(n=16):
    rng = np.random.default_rng(2)
    return (rng.normal(0, 2, (n, CLASSES)).astype(np.float32),
            rng.integers(0, CLASSES, n).astype(np.int32))


@pytest.mark.smoke
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_one_hot_targets_give_the_plain_loss(smoothing):
    logits, labels = logits_and_labels()
    plain = losses.cross_entropy(tf.constant(logits), tf.constant(labels), CLASSES, smoothing)
    soft = losses.cross_entropy(tf.constant(logits), tf.one_hot(labels, CLASSES), CLASSES,
                                smoothing)
    np.testing.assert_allclose(soft.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)


def test_mixed_targets_loss_and_dominant_top1_against_numpy():
    logits, labels = logits_and_labels()
    lam, smoothing = 0.7, 0.1
    own = np.eye(CLASSES)[labels]
    targets = lam * own + (1 - lam) * own[::-1]
    got = losses.cross_entropy(tf.constant(logits), tf.constant(targets, tf.float32), CLASSES,
                               smoothing).numpy()
    # timm: smooth each one-hot, then mix.
    smoothed = own * (1 - smoothing) + smoothing / CLASSES
    expected_targets = lam * smoothed + (1 - lam) * smoothed[::-1]
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got, -(expected_targets * log_softmax).sum(axis=1), rtol=1e-5)
    top1 = losses.top_k_correct(tf.constant(logits), tf.constant(targets, tf.float32), 1)
    dominant = np.where(lam >= 0.5, labels, labels[::-1])
    np.testing.assert_array_equal(top1.numpy(), logits.argmax(axis=1) == dominant)
