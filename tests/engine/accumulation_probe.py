"""Gradient accumulation against the plain step, on 1 worker or under horovodrun: 3 optimizer
steps of a 32-example global batch, as N=1 and as N=4 micro-batches. Writes OUT/rank<r>.npz with
both runs' variables. The stand-in model has no batch norm, so the two must agree exactly (up
to float32 summation order)."""
import os
import sys

import numpy as np
import tensorflow as tf

from engine import TrainStep, distributed, optimizers
from tests.engine.standins import Linear

GLOBAL_BATCH, SIZE, CLASSES = 32, 6, 5


def batch(step, rank, workers):
    """This worker's share of global batch `step` (the same global batch whatever N)."""
    images = tf.random.stateless_uniform([GLOBAL_BATCH, SIZE, SIZE, 3], (step, 1), -1, 1)
    labels = tf.random.stateless_uniform([GLOBAL_BATCH], (step, 2), 0, CLASSES, tf.int32)
    share = GLOBAL_BATCH // workers
    return images[rank * share:(rank + 1) * share], labels[rank * share:(rank + 1) * share]


def train(backend, accumulate):
    model = Linear(SIZE * SIZE * 3, CLASSES, seed=7)
    optimizer = optimizers.build("sgd")
    step = TrainStep(net=model, optimizer=optimizer, backend=backend,
                     lr_fn=lambda s: tf.constant(0.5), weight_decay=1e-3,
                     micro_batches=accumulate)
    optimizer.build(step.variables)
    for s in range(3):
        step(*batch(s, backend.rank, backend.size))
    return [v.numpy() for v in step.variables], int(optimizer.iterations.numpy())


def main(out_dir, only_accumulated=False):
    backend = distributed.create()
    if only_accumulated:  # for a Horovod timeline of the accumulated run alone
        train(backend, 4)
        if backend.size > 1:  # Horovod's shutdown writes out the timeline before the exit
            import horovod.tensorflow as hvd
            hvd.shutdown()
        return
    plain, plain_steps = train(backend, 1)
    accumulated, accumulated_steps = train(backend, 4)
    np.savez(os.path.join(out_dir, f"rank{backend.rank}.npz"),
             **{f"plain_{i}": v for i, v in enumerate(plain)},
             **{f"accumulated_{i}": v for i, v in enumerate(accumulated)},
             steps=[plain_steps, accumulated_steps], size=backend.size)


if __name__ == "__main__":
    main(sys.argv[1], only_accumulated=sys.argv[2:] == ["accumulated"])
