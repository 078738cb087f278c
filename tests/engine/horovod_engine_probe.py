"""Run under horovodrun: the engine's step on different data per rank. Writes OUT/rank<r>.npz
with the rank's local gradients, the all-reduced ones, and its variables after 3 steps."""
import os
import sys

import numpy as np
import tensorflow as tf

import nets
from engine import TrainStep, distributed, optimizers


def batch(rank, step):
    images = tf.random.stateless_uniform([4, 32, 32, 3], (rank, step), -1, 1)
    labels = tf.random.stateless_uniform([4], (rank, step + 100), 0, 5, tf.int32)
    return images, labels


def main(out_dir):
    backend = distributed.create(use_horovod=True)
    net = nets.build("densenet", num_classes=5, blocks=(2, 2), growth_rate=8, stem_filters=16,
                     seed=backend.rank)  # different initial weights: the broadcast must fix it
    optimizer = optimizers.build("sgd")
    step = TrainStep(net=net, optimizer=optimizer, backend=backend,
                     lr_fn=lambda s: tf.constant(0.05), weight_decay=1e-4)
    optimizer.build(step.variables)
    backend.broadcast_variables(net.variables + optimizer.variables)

    images, labels = batch(backend.rank, 0)
    with tf.GradientTape() as tape:
        logits = net(images, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
    local = tape.gradient(loss, step.variables)
    averaged = backend.average_gradients(local)

    for s in range(3):
        step(*batch(backend.rank, s + 1))
    np.savez(os.path.join(out_dir, f"rank{backend.rank}.npz"),
             **{f"local_{i}": g.numpy() for i, g in enumerate(local)},
             **{f"averaged_{i}": g.numpy() for i, g in enumerate(averaged)},
             **{f"weight_{i}": v.numpy() for i, v in enumerate(step.variables)},
             **{f"slot_{i}": v.numpy() for i, v in enumerate(optimizer.slot_variables())},
             iterations=optimizer.iterations.numpy(), size=backend.size)


if __name__ == "__main__":
    main(sys.argv[1])
