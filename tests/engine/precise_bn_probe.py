"""Precise BN statistics on this worker (one process, or under horovodrun): recomputes them with
engine.Trainer.evaluate on the small recipe-format data, then reads the same batches back from
their stream and records every BN layer's input in an eager training-mode pass. Writes
OUT/rank<r>.npz: the layers' moving statistics and, per layer, the numpy batch means and
Bessel-corrected variances of the recorded inputs."""
import os
import sys

import numpy as np
import tensorflow as tf

import input as inputs
import nets
from engine import TrainConfig, Trainer, TrainStep, distributed, optimizers, precise_bn
from nets import layers

BATCHES, SEED = 3, 5


def main(data_dir, out_dir):
    backend = distributed.create()
    net = nets.build("densenet", num_classes=10, blocks=(2, 2), growth_rate=4, stem_filters=8,
                     dropout_rate=0.2, seed=1)
    optimizer = optimizers.build("sgd")
    data = inputs.build("imagenet", dataset_dir=data_dir, image_size=32, deterministic=True)
    step = TrainStep(net=net, optimizer=optimizer, backend=backend,
                     lr_fn=lambda s: tf.constant(0.1))
    config = TrainConfig(model_dir=os.path.join(out_dir, "run"), batch_size=4 * backend.size,
                         epochs=1, steps_per_epoch=2, seed=SEED, validation_steps=1,
                         precise_bn_batches=BATCHES)
    trainer = Trainer(data=data, backend=backend,
                      train_step=step, config=config, log=lambda *a, **k: None)
    trainer.train()  # 2 steps, then precise BN before the epoch's evaluation
    rng_state = net.dropout_rng.state.numpy()
    norms = net.batch_norms()
    moving = {f"mean_{i}": bn.moving_mean.numpy() for i, bn in enumerate(norms)}
    moving.update({f"var_{i}": bn.moving_variance.numpy() for i, bn in enumerate(norms)})

    recorded = {id(bn): [] for bn in norms}
    original = layers.BatchNorm.__call__

    def recording(bn, x, training):
        if training:
            recorded[id(bn)].append(x.numpy().astype(np.float64))
        return original(bn, x, training)

    layers.BatchNorm.__call__ = recording
    stream = data.train_dataset(4, worker=backend.rank, workers=backend.size,
                                seed=precise_bn.stream_seed(SEED))
    for images, _ in stream.take(BATCHES):
        net.forward(images, training=True, dropout=False)
    layers.BatchNorm.__call__ = original
    batch_stats = {}
    for i, bn in enumerate(norms):
        xs = recorded[id(bn)]
        assert len(xs) == BATCHES
        batch_stats[f"batch_means_{i}"] = np.stack([x.mean(axis=(0, 1, 2)) for x in xs])
        batch_stats[f"batch_vars_{i}"] = np.stack([x.reshape(-1, x.shape[-1]).var(axis=0, ddof=1)
                                                   for x in xs])
    np.savez(os.path.join(out_dir, f"rank{backend.rank}.npz"), **moving, **batch_stats,
             layers=len(norms), size=backend.size,
             rng_untouched=np.array_equal(rng_state, net.dropout_rng.state.numpy()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
