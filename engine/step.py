"""The train and eval steps: the only code that runs per batch.

The train step is one tf.function: forward in the net's compute dtype, float32 loss plus the
L2 penalty, tape.gradient, an explicit all-reduce (average) of the gradients across workers,
the fused optimizer update, and on-device accumulation of metric sums. A step whose all-reduced
gradients are not finite applies nothing (neither the update nor the batch-norm moving
statistics) and records its step number; every later step applies nothing either, until the
loop reads that record at its next event boundary and stops with the last good weights. So the
host never has to wait for the device between steps.
"""
from typing import Callable

import tensorflow as tf

from engine import losses, observe


class Metrics(tf.Module):
    """On-device sums since the last read: loss, top-1 and top-5 hits, examples."""

    def __init__(self, name):
        super().__init__(name=name)
        self.sums = [tf.Variable(0.0, trainable=False, name=n)
                     for n in ("loss", "top1", "top5", "examples")]

    def add(self, loss_sum, top1, top5, examples):
        for variable, value in zip(self.sums, (loss_sum, top1, top5, examples)):
            variable.assign_add(value)

    def read_and_reset(self, backend):
        """Sums over all workers, then zeroes the local sums: {loss, top1, top5, examples}."""
        totals = observe.to_host(backend.sum([v.read_value() for v in self.sums]))
        for v in self.sums:
            v.assign(0.0)
        loss, top1, top5, examples = (float(t) for t in totals)
        count = max(examples, 1.0)
        return {"loss": loss / count, "top1": top1 / count, "top5": top5 / count,
                "examples": int(round(examples))}

    def local_examples(self):
        """This worker's example count since the last read; reading it waits for the device."""
        return float(observe.to_host([self.sums[3]])[0])


class TrainStep:
    """`step(images, labels)` runs one training step; `step.loop(iterator, steps)` runs `steps`
    of them inside one tf.function. Neither returns anything: metric sums accumulate in
    `self.metrics`, and the first step whose gradients were not finite is kept in
    `self.nonfinite_step` (-1 while there is none)."""

    def __init__(self, *, net, optimizer, backend, lr_fn: Callable, weight_decay: float = 0.0,
                 weight_decay_mode: str = "all", label_smoothing: float = 0.0,
                 jit_compile: bool = False):
        self.net, self.optimizer, self.backend, self.lr_fn = net, optimizer, backend, lr_fn
        self.variables = net.trainable_variables_in_order()
        self.penalized = ([] if weight_decay_mode == "decoupled"
                          else losses.regularized_variables(net, weight_decay_mode))
        self.weight_decay, self.label_smoothing = weight_decay, label_smoothing
        self.metrics = Metrics("train_metrics")
        self.nonfinite_step = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                          name="nonfinite_step")
        self._one = tf.function(self._step, jit_compile=jit_compile or None)
        self.loop = tf.function(self._loop)

    def __call__(self, images, labels):
        self._one(images, labels)

    def _step(self, images, labels):
        with tf.GradientTape() as tape:
            logits, batch_statistics = self.net.forward(images, training=True)
            per_example = losses.cross_entropy(logits, labels, self.net.num_classes,
                                               self.label_smoothing)
            data_loss = tf.reduce_mean(per_example)
            loss = data_loss + losses.l2_penalty(self.penalized, self.weight_decay)
        grads = tape.gradient(loss, self.variables)
        grads = self.backend.average_gradients(grads)
        # Once a step was refused, refuse the rest of the window: the loop checks only at event
        # boundaries, and the weights it stops with must be those before the first bad step.
        finite = tf.logical_and(tf.math.is_finite(tf.linalg.global_norm(grads)),
                                self.nonfinite_step < 0)
        step = self.optimizer.iterations

        def apply():
            self.optimizer.apply(grads, self.lr_fn(step))
            self.net.update_moving_statistics(batch_statistics)
            return tf.constant(True)

        def refuse():
            self.nonfinite_step.assign(tf.where(self.nonfinite_step < 0, step,
                                                self.nonfinite_step))
            return tf.constant(False)

        tf.cond(finite, apply, refuse)
        batch = tf.cast(tf.shape(labels)[0], tf.float32)
        self.metrics.add(data_loss * batch,
                         tf.reduce_sum(losses.top_k_correct(logits, labels, 1)),
                         tf.reduce_sum(losses.top_k_correct(logits, labels, 5)), batch)

    def _loop(self, iterator, steps):
        """`steps` train steps inside one tf.function (cuts host overhead on fast devices)."""
        for _ in tf.range(steps):
            images, labels = next(iterator)
            self._step(images, labels)


class EvalStep:
    """`step(images, labels, mask)` adds the masked sums of one batch to `self.metrics`."""

    def __init__(self, net):
        self.net = net
        self.metrics = Metrics("eval_metrics")
        self._one = tf.function(self._step)

    def __call__(self, images, labels, mask):
        self._one(images, labels, mask)

    def _step(self, images, labels, mask):
        logits = self.net(images, training=False)
        per_example = losses.cross_entropy(logits, labels, self.net.num_classes)
        self.metrics.add(tf.reduce_sum(per_example * mask),
                         tf.reduce_sum(losses.top_k_correct(logits, labels, 1) * mask),
                         tf.reduce_sum(losses.top_k_correct(logits, labels, 5) * mask),
                         tf.reduce_sum(mask))
