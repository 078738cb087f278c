"""Run under horovodrun: each rank writes what Horovod's collectives gave it to OUT/rank<r>.json.

The test that launches this computes the expected values itself, from the same per-rank formulas.
"""
import json
import os
import sys

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf


def rank_tensors(rank):
    """Different values on every rank, so that an average is not a copy."""
    return [tf.constant([rank + 1.0, 2.0 * (rank + 1), -3.0 * rank], tf.float32),
            tf.reshape(tf.range(6, dtype=tf.float32) * (rank + 1) + 0.5 * rank, [2, 3])]


@tf.function
def averaged_in_graph(tensors):
    return hvd.grouped_allreduce(tensors, op=hvd.Average)


def main(out_dir):
    hvd.init()
    rank = hvd.rank()
    tensors = rank_tensors(rank)
    eager = hvd.grouped_allreduce(tensors, op=hvd.Average)
    graph = averaged_in_graph(tensors)
    variable = tf.Variable(np.arange(4, dtype=np.float32) + 100.0 * rank)
    hvd.broadcast_variables([variable], root_rank=0)
    result = {
        "rank": rank, "size": hvd.size(), "local_rank": hvd.local_rank(),
        "gloo": hvd.gloo_enabled(),
        "eager": [t.numpy().tolist() for t in eager],
        "graph": [t.numpy().tolist() for t in graph],
        "broadcast": variable.numpy().tolist(),
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1])
