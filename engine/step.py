"""The train and eval steps: the only code that runs per batch.

The train step is one tf.function: forward in the net's compute dtype, float32 loss plus the
L2 penalty, tape.gradient, an explicit all-reduce (average) of the gradients across workers,
the fused optimizer update, and on-device accumulation of metric sums. A step whose all-reduced
gradients are not finite applies nothing and records its step number, so that the loop stops
with the last good weights.
"""
import tensorflow as tf

from engine import losses


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
        totals = backend.sum([v.read_value() for v in self.sums])
        for v in self.sums:
            v.assign(0.0)
        loss, top1, top5, examples = (float(t) for t in totals)
        count = max(examples, 1.0)
        return {"loss": loss / count, "top1": top1 / count, "top5": top5 / count,
                "examples": int(round(examples))}


class TrainStep:
    """train_step(batch) / train_loop(iterator, steps): updates, returns nothing (metrics are
    accumulated in `self.metrics`; the first non-finite step in `self.nonfinite_step`)."""

    def __init__(self, net, optimizer, backend, lr_fn, weight_decay=0.0,
                 weight_decay_mode="all", label_smoothing=0.0, jit_compile=False):
        self.net, self.optimizer, self.backend, self.lr_fn = net, optimizer, backend, lr_fn
        self.variables = net.weights()
        self.penalized = ([] if weight_decay_mode == "decoupled"
                          else losses.regularized_variables(net, weight_decay_mode))
        self.weight_decay, self.label_smoothing = weight_decay, label_smoothing
        self.metrics = Metrics("train_metrics")
        self.nonfinite_step = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                          name="nonfinite_step")
        self.train_step = tf.function(self._step, jit_compile=jit_compile or None)
        self.train_loop = tf.function(self._loop)

    def lr(self):
        return self.lr_fn(self.optimizer.iterations)

    def _step(self, images, labels):
        with tf.GradientTape() as tape:
            logits = self.net(images, training=True)
            per_example = losses.cross_entropy(logits, labels, self.net.num_classes,
                                               self.label_smoothing)
            data_loss = tf.reduce_mean(per_example)
            loss = data_loss + losses.l2_penalty(self.penalized, self.weight_decay)
        grads = tape.gradient(loss, self.variables)
        grads = self.backend.average_gradients(grads)
        finite = tf.math.is_finite(tf.linalg.global_norm(grads))
        step = self.optimizer.iterations

        def apply():
            self.optimizer.apply(grads, self.lr_fn(step))
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
    """eval_step(images, labels, mask): adds masked sums to `self.metrics`."""

    def __init__(self, net):
        self.net = net
        self.metrics = Metrics("eval_metrics")
        self.eval_step = tf.function(self._step)

    def _step(self, images, labels, mask):
        logits = self.net(images, training=False)
        per_example = losses.cross_entropy(logits, labels, self.net.num_classes)
        self.metrics.add(tf.reduce_sum(per_example * mask),
                         tf.reduce_sum(losses.top_k_correct(logits, labels, 1) * mask),
                         tf.reduce_sum(losses.top_k_correct(logits, labels, 5) * mask),
                         tf.reduce_sum(mask))
