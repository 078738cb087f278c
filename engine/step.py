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

from engine import losses, model, observe
from engine.run_format import ALLREDUCE, APPLY, BACKWARD, FORWARD


class Metrics(tf.Module):
    """On-device sums since the last read: loss, top-1 and top-5 hits, examples; with
    `grad_norms`, also the applied steps' global gradient norms and their count."""

    def __init__(self, name, *, grad_norms=False):
        super().__init__(name=name)
        names = ("loss", "top1", "top5", "examples") + (("grad_norm", "applied_steps")
                                                          if grad_norms else ())
        self.sums = [tf.Variable(0.0, trainable=False, name=n) for n in names]
        # Totals carried over from partial sums (carry_partial_sums): equal on every worker.
        self.carried = [tf.Variable(0.0, trainable=False, name=f"carried_{n}")
                        for n in names[:4]]

    def add(self, *values):
        for variable, value in zip(self.sums, values, strict=True):
            variable.assign_add(value)

    def read_and_reset(self, backend):
        """Sums over all workers, then zeroes the local sums: {loss, top1, top5, examples} and,
        when kept and a step was applied, the mean gradient norm `grad_norm` (every worker adds
        the same all-reduced norm, so the workers' sums keep the mean)."""
        read = observe.to_host(backend.sum([v.read_value() for v in self.sums])
                               + [v.read_value() for v in self.carried])
        for v in self.sums + self.carried:
            v.assign(0.0)
        totals = [float(t) for t in read[:len(self.sums)]]
        for i, carried in enumerate(read[len(self.sums):]):
            totals[i] += float(carried)
        loss, top1, top5, examples, *norms = totals
        count = max(examples, 1.0)
        result = {"loss": loss / count, "top1": top1 / count, "top5": top5 / count,
                  "examples": int(round(examples))}
        if norms and norms[1] > 0:
            result["grad_norm"] = norms[0] / norms[1]
        return result

    def carry_partial_sums(self, backend):
        """Moves the workers' partial sums (loss, hits, examples) into `carried`, which holds
        their total on every worker, so that a worker that leaves takes no share with it; the
        next read's totals are unchanged. The gradient-norm sums are equal on every worker
        already (each adds the same all-reduced norm), so they stay."""
        partial = self.sums[:4]
        for carried, variable, total in zip(self.carried, partial,
                                            backend.sum([v.read_value() for v in partial])):
            carried.assign_add(total)
            variable.assign(0.0)

    def local_examples(self):
        """This worker's example count since the last read; reading it waits for the device."""
        return float(observe.to_host([self.sums[3]])[0])


class TrainStep:
    """`step(images, labels)` runs one optimizer step; `step.loop(iterator, steps)` runs `steps`
    of them inside one tf.function (each one XLA-compiled with jit_compile, as `step` is).
    Labels are class ids [B], or soft targets [B, classes] from mixup/CutMix, whose top-1 and
    top-5 count the dominant class.
    Neither returns anything: metric sums accumulate in `self.metrics`, and the first step whose
    gradients were not finite is kept in `self.nonfinite_step` (-1 while there is none).

    The global batch is W x N micro-batch slots (W workers, N = micro_batches); this
    worker's batch is its slots' micro-batches in order (input.modules.worker_slots: slots r,
    r + W, ...). Their float32 gradients are summed locally and all-reduced once; batch norm
    normalizes each micro-batch with its own statistics, and its moving averages move once per
    step towards the mean of the micro-batches' statistics (averaged across workers before they
    are read, which is the same mean, so any W x N of the same slots moves them alike). Dropout
    in slot s of step t draws from (seed, t, s) alone. With `ema`, the average is updated after
    every applied step."""

    def __init__(self, *, net, optimizer, backend, lr_fn: Callable, weight_decay: float = 0.0,
                 weight_decay_mode: str = "all", label_smoothing: float = 0.0,
                 micro_batches: int = 1, ema=None, jit_compile: bool = False, seed: int = 0,
                 clip_grad_norm: float = None):
        if micro_batches < 1:
            raise ValueError(f"micro_batches must be at least 1, not {micro_batches}")
        self.net, self.optimizer, self.backend, self.lr_fn = net, optimizer, backend, lr_fn
        self.variables = net.trainable_variables_in_order()
        self.penalized = ([] if weight_decay_mode == "decoupled"
                          else losses.regularized_variables(net, weight_decay_mode))
        self.weight_decay, self.label_smoothing = weight_decay, label_smoothing
        self.micro_batches, self.ema, self.seed = micro_batches, ema, seed
        self.clip_grad_norm = clip_grad_norm
        self.metrics = Metrics("train_metrics", grad_norms=True)
        self.nonfinite_step = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                          name="nonfinite_step")
        self._jit_compile = jit_compile or None
        self._trace_anew()

    def _trace_anew(self):
        self._one = tf.function(self._step, jit_compile=self._jit_compile)
        self.loop = tf.function(self._loop)

    def resize(self, *, micro_batches, seed):
        """After the workers changed (elastic training): this worker's micro-batches per step
        and the run's seed, and new step functions, which trace with the backend's new rank and
        size (the slot keys bake them in)."""
        if micro_batches < 1:
            raise ValueError(f"micro_batches must be at least 1, not {micro_batches}")
        self.micro_batches, self.seed = micro_batches, seed
        self._trace_anew()

    def __call__(self, images, labels):
        self._one(images, labels)

    # What the loop uses of the step (it owns the net, the optimizer and the weight average).
    def build(self):
        """Creates the optimizer's slots (before a restore or a broadcast)."""
        self.optimizer.build(self.variables)

    def shared_variables(self):
        """Everything that must be equal on every worker: the net, the optimizer (slots and
        iterations) and the weight average."""
        averages = list(self.ema.averages) if self.ema is not None else []
        return list(self.net.variables) + list(self.optimizer.variables) + averages

    def drifting_variables(self):
        """The variables that each worker moves with its own batches (the moving statistics and
        their averages): averaged across workers before evaluations and checkpoints."""
        averages = self.ema.statistics_averages() if self.ema is not None else []
        return self.net.moving_statistics() + averages

    def average_drifting_statistics(self):
        """Averages the drifting variables across workers (each moved them with its own
        batches), so that every worker holds the one model that evaluation and checkpoints use;
        the moving averages are linear in the statistics, so later steps move the average as
        they would have."""
        if self.backend.size > 1:
            drifting = self.drifting_variables()
            model.assign(drifting, self.backend.average([v.read_value() for v in drifting]))

    def first_nonfinite_step(self):
        """The 0-based step whose gradients were first not finite, or -1 (a device read)."""
        return int(observe.to_host([self.nonfinite_step])[0])

    def read_metrics(self):
        """The metric sums since the last read, over all workers, then reset (a device read)."""
        return self.metrics.read_and_reset(self.backend)

    def learning_rate(self, updates):
        """The learning rate of the update after `updates` updates."""
        return float(self.lr_fn(updates))

    def fresh_function(self):
        """A new tf.function of one step, traced on its first call: what runs under a callback
        that instruments ops as they are traced (the debugger's tensor dumps)."""
        return tf.function(self._step, jit_compile=self._jit_compile)

    def _slot_key(self, micro_batch):
        """The key of every draw of this step's micro-batch `micro_batch` (int tensor): from
        (seed, step, slot), so that whichever worker runs a slot draws alike."""
        slot = self.backend.rank + micro_batch * self.backend.size
        step_key = tf.stack([tf.constant(self.seed, tf.int64),
                             tf.cast(self.optimizer.iterations, tf.int64)])
        return tf.random.experimental.stateless_fold_in(step_key, tf.cast(slot, tf.int64))

    def _gradients(self, images, labels, scale, key):
        """Gradients of scale * (mean data loss + L2 penalty), the batch statistics, and the
        metric sums [loss, top-1, top-5, examples] of one (micro-)batch; `key` its draws'."""
        with tf.GradientTape() as tape, tf.name_scope(FORWARD):
            logits, batch_statistics = self.net.forward(images, training=True, dropout_key=key)
            per_example = losses.cross_entropy(logits, labels, self.net.num_classes,
                                               self.label_smoothing)
            data_loss = tf.reduce_mean(per_example)
            loss = data_loss + losses.l2_penalty(self.penalized, self.weight_decay)
            if scale != 1:
                loss = loss * scale
        with tf.name_scope(BACKWARD):
            grads = tape.gradient(loss, self.variables)
        with tf.name_scope(FORWARD):
            batch = tf.cast(tf.shape(labels)[0], tf.float32)
            sums = [data_loss * batch, tf.reduce_sum(losses.top_k_correct(logits, labels, 1)),
                    tf.reduce_sum(losses.top_k_correct(logits, labels, 5)), batch]
        return grads, batch_statistics, sums

    def _one_batch(self, images, labels):
        """Gradients, the moving statistics they lead to (not assigned) and metric sums."""
        grads, batch_statistics, sums = self._gradients(images, labels, 1.0, self._slot_key(0))
        return grads, self.net.moved_statistics(batch_statistics), sums

    def _accumulated(self, images, labels):
        """The summed gradients of N micro-batches, the moving statistics they lead to (one
        update towards their mean statistics, not assigned), and the metric sums; one
        micro-batch in memory at a time."""
        n = self.micro_batches
        if images.shape[0] % n:
            raise ValueError(f"a batch of {images.shape[0]} does not split into {n} "
                             f"micro-batches")
        images = tf.reshape(images, [n, images.shape[0] // n, *images.shape[1:]])
        labels = tf.reshape(labels, [n, labels.shape[0] // n, *labels.shape[1:]])

        def body(i, grads, statistics, sums):
            g, batch_statistics, s = self._gradients(images[i], labels[i], 1.0 / n,
                                                     self._slot_key(i))
            return (i + 1, [a + b for a, b in zip(grads, g)],
                    [a + b / n for a, b in zip(statistics, batch_statistics)],
                    [a + b for a, b in zip(sums, s)])

        start = (tf.constant(0), [tf.zeros_like(v) for v in self.variables],
                 [tf.zeros_like(v) for v in self.net.moving_statistics()], [tf.constant(0.0)] * 4)
        _, grads, statistics, sums = tf.while_loop(lambda i, *_: i < n, body, start)
        return grads, self.net.moved_statistics(tuple(statistics)), sums

    def _step(self, images, labels):
        accumulate = self._accumulated if self.micro_batches > 1 else self._one_batch
        grads, moved, sums = accumulate(images, labels)
        with tf.name_scope(ALLREDUCE):
            grads = self.backend.average_gradients(grads)
        with tf.name_scope(APPLY):
            norm = tf.linalg.global_norm(grads)
            applied = self._apply_if_finite(grads, norm, moved)
            applied = tf.cast(applied, tf.float32)
            self.metrics.add(*sums, tf.where(applied > 0, norm, 0.0), applied)

    def _apply_if_finite(self, grads, norm, moved_statistics):
        """Applies the update (of the gradients clipped to `clip_grad_norm`, when set; `norm`
        is their global norm) and the moved statistics, or records the step as refused.
        Returns whether it applied (a bool tensor)."""
        # Once a step was refused, refuse the rest of the window: the loop checks only at event
        # boundaries, and the weights it stops with must be those before the first bad step.
        finite = tf.logical_and(tf.math.is_finite(norm), self.nonfinite_step < 0)
        step = self.optimizer.iterations

        def apply():
            updates_before = step.read_value()
            clipped = grads
            if self.clip_grad_norm:
                # tf.clip_by_global_norm's scale: clip / max(norm, clip).
                scale = self.clip_grad_norm / tf.maximum(norm, self.clip_grad_norm)
                clipped = [g * scale for g in grads]
            self.optimizer.apply(clipped, self.lr_fn(updates_before))
            model.assign(self.net.moving_statistics(), moved_statistics)
            if self.ema is not None:
                self.ema.update(updates_before)
            return tf.constant(True)

        def refuse():
            self.nonfinite_step.assign(tf.where(self.nonfinite_step < 0, step,
                                                self.nonfinite_step))
            return tf.constant(False)

        return tf.cond(finite, apply, refuse)

    def _loop(self, iterator, steps):
        """`steps` train steps inside one tf.function (cuts host overhead on fast devices)."""
        for _ in tf.range(steps):
            images, labels = next(iterator)
            self._one(images, labels)


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
