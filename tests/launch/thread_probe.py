"""Starts launch.train's backend with the given flags, then prints TensorFlow's own account of
its thread pools as one JSON line (tests/launch/test_machine_fit.py)."""
import launch.quiet_start  # noqa: F401

# isort: split
import json
import sys

import tensorflow as tf
from absl import app

from launch import build_run, plan, train


def main(argv):
    del argv
    build_run.start_backend(plan.from_flags(train.FLAGS))
    tf.constant(1.0) + 1.0  # the context starts with the pools as set
    print(json.dumps({"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                      "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}))
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
