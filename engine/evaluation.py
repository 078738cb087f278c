"""Exact evaluation: every validation example counted once, whatever the worker count, with the
net's weights and, with a weight average, once more with the average; and the BN statistics
that evaluation reads (averaged across workers, or recomputed: engine/precise_bn.py)."""
import time

import tensorflow as tf

from engine import precise_bn, run_format
from engine.step import EvalStep


class Evaluator:
    """`train_step` owns the net and weight average; `elapsed()` the run's training seconds;
    `watchdog` the stall watchdog (engine/watchdog.py), armed before each wait."""

    def __init__(self, *, train_step, data, backend, local_batch, seed, validation_steps,
                 precise_bn_batches, recorder, log, elapsed, watchdog, validation_freq=1,
                 epochs=None):
        self.train_step, self.data, self.backend = train_step, data, backend
        self.local_batch, self.seed = local_batch, seed
        self.validation_steps, self.precise_bn_batches = validation_steps, precise_bn_batches
        self.validation_freq, self.epochs = validation_freq, epochs
        self.recorder, self.log, self.elapsed, self.watchdog = recorder, log, elapsed, watchdog
        self.eval_step = EvalStep(train_step.net)
        self.statistics = None  # precise BN's compiled forward pass, traced once per run
        # The validation pass's dataset, built once: building a tf.data pipeline traces its
        # functions into the process's function library, where they stay, so a dataset built
        # per evaluation grew the process by every evaluation (launch.benchmark --mode=soak).
        self._validation = None
        self._statistics_sample = None  # precise BN's batches, built once like validation's

    def due(self, epoch):
        """Whether the end of `epoch` is evaluated: every `validation_freq` epochs and the last
        one (`epochs`), unless validation is off."""
        return self.validation_steps != 0 and (epoch % self.validation_freq == 0
                                               or epoch == self.epochs)

    def evaluate(self, step, epoch, *, precise_bn_sec):
        """One exact pass (or validation_steps batches per worker) with the net's weights and,
        with a weight average, one with the average (its statistics recomputed too when precise
        BN is on); metrics summed over workers. `precise_bn_sec`: the seconds the caller spent
        recomputing statistics (None: it did not), recorded beside the metrics. Returns {loss,
        top1, top5, examples} of the net's weights, and the average's under ema_ keys."""
        self._warn_if_statistics_unsettled(step)
        metrics = self._pass(run_format.VALIDATION, step, epoch, precise_bn_sec)
        ema = self.train_step.ema
        if ema is not None:
            with ema.swapped_in():
                averaged = self._pass(run_format.VALIDATION_EMA, step, epoch,
                                      self.recompute_statistics(step))
            metrics.update({f"ema_{k}": v for k, v in averaged.items()})
        return metrics

    def recompute_and_evaluate(self, step, epoch):
        return self.evaluate(step, epoch,
                             precise_bn_sec=self.recompute_statistics(step))

    def evaluate_if_missing(self, step, steps_per_epoch):
        """A run killed between an epoch's checkpoint and its evaluation resumes past that
        epoch: evaluate it now, so that no epoch's validation metrics are missing. Returns its
        metrics, or None when none was missing."""
        if step == 0 or step % steps_per_epoch or not self.due(step // steps_per_epoch):
            return None
        have = (not self.backend.is_chief
                or any(r["split"] == run_format.VALIDATION and r["step"] == step
                       for r in self.recorder.records()))
        if self.backend.any(not have):
            return self.recompute_and_evaluate(step, step // steps_per_epoch)
        return None

    def average_drifting_statistics(self):
        """Workers' BN statistics drift apart (each sees its own batches): average them so that
        evaluation and checkpoints use one model."""
        self.train_step.average_drifting_statistics()

    def recompute_statistics(self, step):
        """Precise BN over precise_bn_batches batches of their own stream; seconds, or None
        when off."""
        if not self.precise_bn_batches:
            return None
        start = time.perf_counter()
        self.watchdog.expect("recomputing batch-norm statistics", step, long=True)
        if self.statistics is None:
            self.statistics = precise_bn.statistics_function(self.train_step.net)
        micro_batches = self.train_step.micro_batches
        precise_bn.recompute(self.train_step.net,
                             (micro for images, _ in self._statistics_batches()
                              for micro in tf.split(images, micro_batches)),
                             self.backend, statistics=self.statistics)
        return round(time.perf_counter() - start, 3)

    def _statistics_batches(self):
        """This worker's precise-BN batches: the training slots' own stream, a micro-batch at a
        time, so the same batches whatever the worker count. Built once per Evaluator (a
        change of workers builds a new one): see engine/precise_bn.py for why."""
        if self._statistics_sample is None:
            self._statistics_sample = self.data.train_dataset(
                self.local_batch, worker=self.backend.rank, workers=self.backend.size,
                seed=precise_bn.stream_seed(self.seed),
                micro_batches=self.train_step.micro_batches).take(self.precise_bn_batches)
        return self._statistics_sample

    def _warn_if_statistics_unsettled(self, step):
        """Moving averages keep momentum^updates of their initial values: below about
        3 / (1 - momentum) updates (5% left) evaluation reads statistics of no data."""
        net = self.train_step.net
        if self.precise_bn_batches or not net.moving_statistics():
            return
        momentum = net.statistics_momentum
        updates = step  # one update per step, whatever the micro-batches
        left = precise_bn.unsettled_share(updates, momentum)
        if left is not None:
            self.log(f"warning: after {updates} updates the batch-norm moving averages "
                     f"(momentum {momentum}) still hold {left:.0%} of their initial values, so "
                     f"this evaluation may be far off; use --precise_bn_batches (e.g. 8192 / "
                     f"batch size) or a smaller --bn_momentum")

    def _validation_batches(self):
        """This worker's batches of one validation pass (or validation_steps of them): one
        dataset, iterated afresh by each pass."""
        if self._validation is None:
            batches = self.data.eval_batches(self.local_batch, self.backend.size)
            if self.validation_steps:
                batches = min(batches, self.validation_steps)
            self._validation = self.data.eval_dataset(
                self.local_batch, worker=self.backend.rank, workers=self.backend.size
            ).take(batches)
        return self._validation

    def _pass(self, split, step, epoch, precise_bn_sec):
        start = time.perf_counter()
        for i, (images, labels, mask) in enumerate(self._validation_batches()):
            self.watchdog.expect(f"evaluation batch {i + 1}", step, long=True)
            self.eval_step(images, labels, mask)
        metrics = self.eval_step.metrics.read_and_reset(self.backend)
        record = run_format.eval_record(split=split, step=step, epoch=epoch, metrics=metrics,
                                        seconds=time.perf_counter() - start,
                                        elapsed_sec=self.elapsed(),
                                        precise_bn_sec=precise_bn_sec)
        self.recorder.write(record)
        self.recorder.scalars(split, step, {k: metrics[k] for k in ("loss", "top1", "top5")})
        self.log(run_format.format_eval(record))
        return metrics
