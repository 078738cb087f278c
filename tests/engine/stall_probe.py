"""A run whose input pipeline stalls for good after 3 batches, guarded by the watchdog with a
3 s allowance (60 s for tracing). Run as its own process: the watchdog ends it. One step per
call: only then is the batch fetched outside the step, so that the watchdog can tell input from
device (inside a loop of steps it names both)."""
import sys
import time

import tensorflow as tf

import input as inputs
import nets
from engine import TrainConfig, Trainer, TrainStep, distributed, optimizers
from engine.watchdog import Watchdog


class StallingInput:
    def __init__(self):
        self.inner = inputs.build("synthetic", image_size=32, num_classes=3,
                                  num_train_examples=1000, num_val_examples=4)
        self.num_classes = 3

    def train_dataset(self, batch_size, **kwargs):
        def stall(number, batch):
            def sleep_after_three(n):
                if n >= 3:
                    time.sleep(3600)
                return n
            tf.py_function(sleep_after_three, [number], tf.int64)
            return batch
        numbered = tf.data.Dataset.zip((tf.data.Dataset.range(2**62),
                                        self.inner.train_dataset(batch_size)))
        return numbered.map(lambda n, b: (stall(n, b)[0], b[1]))

    def eval_dataset(self, batch_size, **kwargs):
        return self.inner.eval_dataset(batch_size, **kwargs)

    def eval_batches(self, batch_size, workers=1):
        return self.inner.eval_batches(batch_size, workers)


def main(model_dir):
    net = nets.build("densenet", num_classes=3, blocks=(1,), growth_rate=4, stem_filters=8)
    optimizer = optimizers.build("sgd")
    backend = distributed.SingleProcess()
    step = TrainStep(net=net, optimizer=optimizer, backend=backend,
                     lr_fn=lambda s: tf.constant(0.01))
    config = TrainConfig(model_dir=model_dir, batch_size=2, epochs=1, steps_per_epoch=50,
                         log_steps=1, steps_per_loop=1)
    stall_watchdog = Watchdog(timeout=3, long_timeout=60, rank=0)
    Trainer(data=StallingInput(), backend=backend,
            train_step=step, config=config, watchdog=stall_watchdog).train()
    print("finished without stalling")


if __name__ == "__main__":
    main(sys.argv[1])
