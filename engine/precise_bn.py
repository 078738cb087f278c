"""Precise batch-norm statistics (pycls; Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021).

Moving averages at momentum 0.99 keep a quarter of their initial values after 138 steps, so a
short run, a brief fine-tuning or an early epoch evaluates with statistics that describe no
data. Before evaluating, each BN layer's moving mean and variance are set instead to the
population statistics of a few training batches, run forward in training mode (no gradients,
no dropout):

    mean     = mean of the batch means
    variance = mean of the batch variances + variance of the batch means

with each batch variance Bessel-corrected as the layer's own update uses (the fused kernel's),
over the batches of all workers.

Every recomputation reads the same batches: the first `precise_bn_batches` of that stream, one
dataset built once per run and iterated afresh (see engine/evaluation.py). A fresh draw per
evaluation would mean a new tf.data pipeline per evaluation, and each one traced its functions
into the process for good: the run grew by every evaluation (python -m launch.benchmark
--mode=soak --soak_train_flags=--precise_bn_batches=4). A fixed sample of thousands of images
estimates the population statistics as well; evaluations then differ by the weights alone.
"""
import tensorflow as tf

from engine import model


def stream_seed(run_seed: int) -> int:
    """The seed of the batches precise BN reads: their own stream, never the training one, so
    that a resumed run's training input is the uninterrupted run's."""
    return (run_seed * 7_919 + 104_729) % 2**31


def unsettled_share(updates: int, momentum: float):
    """The share of their initial values that moving averages still hold after `updates`
    (momentum ** updates) when that is more than about 5%, i.e. updates < 3 / (1 - momentum);
    else None."""
    if momentum > 0 and updates < 3 / (1 - momentum):
        return momentum ** updates
    return None


def statistics_function(net):
    """The compiled forward pass that returns `net`'s batch statistics of a batch. Keep it for
    the run: each new one traces the whole net again (seconds for a DenseNet-121 on a CPU)."""

    @tf.function
    def statistics(images):
        return net.forward(images, training=True, dropout=False)[1]
    return statistics


def recompute(net, batches, backend, *, statistics=None) -> int:
    """Sets every moving statistic of `net` (an engine.model.Model) to the population statistics
    of `batches` (an iterable of image batches, the same count on every worker). Returns the
    number of local batches. `statistics`: statistics_function(net), kept by the caller."""
    statistics = statistics or statistics_function(net)
    sums, count = None, 0
    for images in batches:
        terms = [(tf.cast(m, tf.float64), tf.cast(v, tf.float64), tf.cast(m, tf.float64) ** 2)
                 for m, v in model.statistic_pairs(statistics(images))]
        sums = terms if sums is None else [tuple(a + b for a, b in zip(s, t))
                                           for s, t in zip(sums, terms)]
        count += 1
    if not count:
        raise ValueError("precise BN statistics need at least one batch")
    means = backend.average([term / count for triple in sums for term in triple])
    population = []
    for i in range(len(sums)):
        mean, mean_variance, mean_square = means[3 * i:3 * i + 3]
        population += [tf.cast(mean, tf.float32),
                       tf.cast(mean_variance + mean_square - mean ** 2, tf.float32)]
    model.assign(net.moving_statistics(), population)
    return count
