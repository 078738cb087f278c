"""Loss and regularization, in float32 whatever the compute dtype."""
import tensorflow as tf

WEIGHT_DECAY_MODES = ("all", "kernels", "decoupled")


def cross_entropy(logits, labels, num_classes, label_smoothing=0.0):
    """Per-example softmax cross-entropy [N] against (optionally smoothed) targets: labels are
    class ids [N], or soft targets [N, num_classes] (mixup/CutMix), smoothed as timm does
    (smoothing is linear, so smoothing the mix equals mixing the smoothed one-hots)."""
    logits = tf.cast(logits, tf.float32)
    soft = labels.shape.rank == 2
    if not label_smoothing and not soft:
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    targets = tf.cast(labels, tf.float32) if soft else tf.one_hot(labels, num_classes)
    targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    return tf.nn.softmax_cross_entropy_with_logits(targets, logits)


def regularized_variables(net, mode):
    """The variables an L2 penalty covers: `all` is the recipe's (conv and dense kernels, dense
    bias, BN gamma and beta); `kernels` leaves BN parameters and biases out."""
    roles = net.variables_by_role()
    if mode == "all":
        return roles["kernels"] + roles["biases"] + roles["normalization"]
    if mode == "kernels":
        return roles["kernels"]
    raise ValueError(f"unknown weight decay mode {mode!r}")


def l2_penalty(variables, weight_decay):
    """weight_decay * sum(w^2) (gradient 2 * weight_decay * w), as Keras' l2 regularizer."""
    if not weight_decay or not variables:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.reduce_sum(tf.square(v)) for v in variables])


def top_k_correct(logits, labels, k):
    """[N] float32: 1 where the label is among the k largest logits. For soft targets [N, C]
    the label is the dominant class (the larger share of a mixed example)."""
    if labels.shape.rank == 2:
        labels = tf.argmax(labels, axis=-1, output_type=tf.int32)
    return tf.cast(tf.math.in_top_k(labels, tf.cast(logits, tf.float32), k), tf.float32)
