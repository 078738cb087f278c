"""`python -m launch.train ...` in which rank 1 sleeps SLEEP_SEC before each gradient all-reduce:
a planted slow worker, for the profile report to find as rank 0's wait (run under horovodrun)."""
import runpy
import time

import tensorflow as tf

from engine import distributed

SLEEP_SEC = 1.0
_average = distributed.Horovod.average_gradients


def _late_on_rank_1(self, grads):
    # Every rank builds the same ops (Horovod matches the group by its tensors' names), and
    # only rank 1 sleeps. The group is reduced when all its inputs are ready: holding one back
    # holds all.
    grads = list(grads)
    rank = self.rank

    def nap(x):
        if rank == 1:
            time.sleep(SLEEP_SEC)
        return x
    late = tf.py_function(nap, [grads[0]], grads[0].dtype)
    grads[0] = tf.ensure_shape(late, grads[0].shape)
    return _average(self, grads)


distributed.Horovod.average_gradients = _late_on_rank_1

if __name__ == "__main__":
    runpy.run_module("launch.train", run_name="__main__", alter_sys=True)
