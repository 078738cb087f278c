"""The outer loop: epochs of steps, exact evaluation, checkpoints, logs, stops, and the
debugging windows (profiler, tensor dumps: engine/windows.py).

Owns what happens between steps (orbit's split): the steps themselves are in engine/step.py.
Rank 0 writes checkpoints, metrics.jsonl and TensorBoard events; every rank computes.
"""
import dataclasses
import signal
import time
from typing import Optional, Tuple

import tensorflow as tf

from engine import checkpoints, observe, precise_bn
from engine.cadence import itstime, next_boundary
from engine.errors import NonFiniteLoss
from engine.step import EvalStep, TrainStep
from engine.windows import DebugWindows


@dataclasses.dataclass
class TrainConfig:
    """What the loop needs to know; fields that mirror a flag of launch.train carry its name."""
    model_dir: str
    batch_size: int                          # global: each worker takes batch_size / workers
    epochs: int
    steps_per_epoch: int
    validation_steps: Optional[int] = None   # None: the whole split; 0: no evaluation
    seed: int = 0
    log_steps: int = 100
    save_summary_steps: Optional[int] = None  # TensorBoard scalars every N steps (None: off)
    checkpoint_steps: Optional[int] = None   # also checkpoint every N steps (epoch ends always)
    keep_checkpoints: int = 5
    steps_per_loop: int = 1
    profile_steps: Optional[Tuple[int, int]] = None
    resume_from_checkpoint_path: Optional[str] = None  # used when model_dir holds none
    resume_from_epoch: Optional[int] = None  # its epoch, when the checkpoint does not say
    allow_fresh_start: bool = False
    progress: bool = False                   # a live progress line on a terminal
    precise_bn_batches: int = 0              # BN statistics recomputed before evaluating


class StopRequested(Exception):
    """SIGTERM or SIGINT: the loop checkpointed the step it reached (args[0]) and stopped."""


class Trainer:
    """Epochs of train steps with exact evaluation, checkpoints, metrics and profiling.

    `train()` runs to `config.epochs` (resuming from model_dir's latest checkpoint) and returns
    a summary; `evaluate()` runs one exact validation pass; `evaluate_checkpoint(path)`
    evaluates a checkpoint."""

    def __init__(self, *, net, optimizer, data, backend, train_step: TrainStep,
                 config: TrainConfig, watchdog=None, tensor_dumps=None, log=print):
        self.net, self.optimizer, self.data, self.backend = net, optimizer, data, backend
        self.train_step, self.config = train_step, config
        self.ema = train_step.ema
        self.watchdog = watchdog or _NoWatchdog()
        self._progress = None
        self._print = log if backend.is_chief else (lambda *a, **k: None)
        self.local_batch = config.batch_size // backend.size
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Training time summed over the run's segments (a resumed run goes on counting).
        self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed")
        # The worker count that wrote a checkpoint: a resume on another count says what changes.
        self.workers = tf.Variable(backend.size, dtype=tf.int64, trainable=False, name="workers")
        self._segment_start, self._elapsed_before = time.perf_counter(), 0.0
        self.eval_step = EvalStep(net)
        extra = {"ema": self.ema} if self.ema is not None else {}
        self.checkpoints = checkpoints.Checkpoints(
            f"{config.model_dir}/checkpoints", keep=config.keep_checkpoints,
            is_chief=backend.is_chief, log=self.log, optional=("elapsed", "ema", "workers"),
            net=net, optimizer=optimizer, epoch=self.epoch, elapsed=self.elapsed,
            workers=self.workers, **extra)
        self.recorder = observe.Recorder(config.model_dir, backend.is_chief)
        self._stop_signal = None
        # The profiler's and the tensor dumps' windows (tensor_dumps: an
        # engine.tensor_dumps.TensorDumps, or None).
        self.windows = DebugWindows(model_dir=config.model_dir, batch_size=config.batch_size,
                                    profile_steps=config.profile_steps, dumps=tensor_dumps,
                                    is_chief=backend.is_chief, recorder=self.recorder,
                                    log=self.log)
        self._traced = set()  # the kinds of step call (single, loop) already traced

    def log(self, *args, **kwargs):
        if self._progress is not None:
            self._progress.clear()
        self._print(*args, **kwargs)

    # -- start -----------------------------------------------------------------------------
    def _start(self):
        """Builds slots, restores (latest in model_dir, else --resume_from), broadcasts."""
        self.watchdog.expect("restoring and broadcasting the starting state", 0, long=True)
        self.optimizer.build(self.train_step.variables)
        restored = self.checkpoints.restore_latest(self.config.allow_fresh_start)
        if restored is None and self.config.resume_from_checkpoint_path:
            restored = self.checkpoints.restore(self.config.resume_from_checkpoint_path)
            if self.config.resume_from_epoch is not None:
                self.epoch.assign(self.config.resume_from_epoch)
                self.optimizer.iterations.assign(
                    self.config.resume_from_epoch * self.config.steps_per_epoch)
        # Rank 0's weights, statistics, slots and counters everywhere (one broadcast, before
        # step 1, after the slots exist).
        averages = list(self.ema.averages) if self.ema is not None else []
        self.backend.broadcast_variables(self.net.variables + self.optimizer.variables
                                         + (self.epoch, self.elapsed, self.workers)
                                         + tuple(averages))
        if self.ema is not None and (not restored or "ema" in self.checkpoints.missing):
            if restored:
                self.log(f"{restored} holds no weight average: it starts from the restored "
                         f"weights")
            self.ema.reset()  # from the broadcast weights
        step, epoch, elapsed, workers = observe.to_host([self.optimizer.iterations, self.epoch,
                                                         self.elapsed, self.workers])
        step, epoch = int(step), int(epoch)
        self._segment_start, self._elapsed_before = time.perf_counter(), float(elapsed)
        if restored:
            self.log(f"resumed from {restored} at step {step}, epoch {epoch}")
            if "workers" not in self.checkpoints.missing and int(workers) != self.backend.size:
                self.log(self._worker_change_note(int(workers), step))
        self.workers.assign(self.backend.size)
        self.recorder.truncate_after(step)
        self.windows.segment_first_step = step
        return step

    def _worker_change_note(self, before, step):
        """What resuming on another worker count changes (one line)."""
        now = self.backend.size
        return (f"resuming on {now} worker{'s' * (now > 1)} a run that {before} worker"
                f"{'s' * (before > 1)} checkpointed: each worker now takes "
                f"{self.local_batch} of the {self.config.batch_size} examples per step from "
                f"its own shard; the rest of the interrupted pass over the training data is "
                f"dealt from the new shards' order, so until it ends some examples may come "
                f"twice and others not at all; later passes see each example once")

    def _evaluate_if_missing(self, step):
        """A run killed between an epoch's checkpoint and its evaluation resumes past that
        epoch: evaluate it now, so that no epoch's validation metrics are missing."""
        cfg = self.config
        if step == 0 or step % cfg.steps_per_epoch or cfg.validation_steps == 0:
            return
        if not self.backend.is_chief:
            have = True
        else:
            have = any(r["split"] == "validation" and r["step"] == step
                       for r in self.recorder.records())
        if self.backend.any(not have):
            self.evaluate(step, step // cfg.steps_per_epoch)

    def _install_signal_handlers(self):
        def request_stop(signum, frame):
            self._stop_signal = signum
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, request_stop)

    # -- train -----------------------------------------------------------------------------
    def train(self):
        cfg = self.config
        self._install_signal_handlers()
        step = self._start()
        self._evaluate_if_missing(step)
        total_steps = cfg.epochs * cfg.steps_per_epoch
        iterator = iter(self.data.train_dataset(
            self.local_batch, shard_index=self.backend.rank, num_shards=self.backend.size,
            seed=cfg.seed, start_example=step * self.local_batch))
        meter = observe.Throughput(cfg.batch_size)
        progress = self._progress = observe.Progress(
            total_steps, start_step=step, enabled=cfg.progress and self.backend.is_chief)
        last_eval = None
        try:
            step, last_eval = self._epochs(iterator, step, total_steps, meter, progress)
        finally:
            self.windows.stop_dumps()
        progress.close()
        self.windows.stop_profiler(step)
        summary = {"steps": step, "images_per_sec": meter.overall()}
        if last_eval:
            summary.update({f"validation_{k}": v for k, v in last_eval.items()})
        return summary

    def _epochs(self, iterator, step, total_steps, meter, progress):
        """Epochs of steps from `step` to `total_steps`; (last step, last evaluation)."""
        cfg, last_eval = self.config, None
        while step < total_steps:
            epoch = step // cfg.steps_per_epoch
            self.epoch.assign(epoch)
            epoch_end = (epoch + 1) * cfg.steps_per_epoch
            while step < epoch_end:
                chunk_end = next_boundary(
                    step, limit=min(epoch_end, step + self.windows.steps_per_call(
                        step, cfg.steps_per_loop)),
                    every=(cfg.log_steps, cfg.checkpoint_steps, cfg.save_summary_steps),
                    at=self.windows.edges())
                self.windows.open_or_close(step, self.train_step)
                self._run(iterator, step, chunk_end - step, meter)
                step = chunk_end
                logging = (itstime(step, cfg.log_steps, last=epoch_end)
                           or itstime(step, cfg.save_summary_steps))
                checkpointing = itstime(step, cfg.checkpoint_steps) and step != epoch_end
                progress.update(step, meter)  # host-side only: steps and time
                if not (logging or checkpointing or step == epoch_end
                        or step in self.windows.edges() or self.windows.checks_each_step()):
                    continue  # not an event boundary: nothing is read from the device
                self.watchdog.expect(f"the other workers and the device at the step-{step} "
                                     f"boundary", step)
                self._check_finite()
                if logging:
                    self._log_train(step, meter, epoch_end)
                if checkpointing:
                    self._save(step)
                if self.backend.any(self._stop_signal is not None):
                    self._save(step)
                    progress.close()
                    raise StopRequested(step)
            self.epoch.assign(epoch + 1)
            self._sync_moving_statistics()
            precise_seconds = self._precise_bn(step, epoch + 1)
            self._save(step)
            if cfg.validation_steps != 0:
                last_eval = self.evaluate(step, epoch + 1, precise_bn_sec=precise_seconds)
        return step, last_eval

    def _run(self, iterator, step, steps, meter):
        """Dispatches steps step+1..step+steps; the first call of each kind traces (longer)."""
        kind = "single" if steps == 1 else "loop"
        first = kind not in self._traced
        self._traced.add(kind)
        if steps == 1:
            profiling = self.windows.profiling
            with observe.step_marker(step + 1, enabled=profiling):
                wait_start = time.perf_counter()
                self.watchdog.expect("the input pipeline", step, long=first)
                with observe.input_wait_marker(enabled=profiling):
                    images, labels = next(iterator)
                waited = time.perf_counter() - wait_start
                self.watchdog.expect("the train step (the device or the gradient all-reduce)",
                                     step, long=first or self.windows.dumping_here())
                self.windows.run_step(self.train_step, images, labels)
            meter.add(1, waited, time.perf_counter() - wait_start - waited)
        else:
            start = time.perf_counter()
            self.watchdog.expect(f"{steps} train steps in one call (input, device or "
                                 f"all-reduce)", step, long=first, steps=steps)
            self.train_step.loop(iterator, tf.constant(steps))
            meter.add(steps, None, time.perf_counter() - start)

    def _check_finite(self):
        bad = int(observe.to_host([self.train_step.nonfinite_step])[0])
        if bad >= 0:
            raise NonFiniteLoss(f"loss or gradients became NaN or Inf at step {bad + 1}; "
                                f"stopped without applying it (last good checkpoint kept)"
                                f"{self.windows.first_nonfinite_op()}")

    def _log_train(self, step, meter, epoch_end):
        metrics = self.train_step.metrics.read_and_reset(self.backend)
        lr = float(self.train_step.lr_fn(step - 1))
        rates = meter.interval()
        record = {"split": "train", "step": step, "epoch": step / self.config.steps_per_epoch,
                  "loss": metrics["loss"], "top1": metrics["top1"], "top5": metrics["top5"],
                  "lr": lr, **rates, "peak_host_memory_mb": observe.peak_host_memory_mb()}
        device_memory = observe.peak_device_memory_mb()
        if device_memory is not None:
            record["peak_device_memory_mb"] = device_memory
        self.recorder.write(record)
        if itstime(step, self.config.save_summary_steps, last=epoch_end):
            self.recorder.scalars("train", step, {k: record[k] for k in
                                                  ("loss", "top1", "top5", "lr")}
                                  | {"images_per_sec": rates["images_per_sec"]})
        if self.config.progress:
            self._progress.loss = record["loss"]
        else:
            self.log(observe.format_train(record))

    def elapsed_seconds(self):
        return self._elapsed_before + time.perf_counter() - self._segment_start

    def _save(self, step):
        self.watchdog.expect("writing a checkpoint", step, long=True)
        self.elapsed.assign(self.elapsed_seconds())
        self.recorder.sync()
        path = self.checkpoints.save(step)
        if path:
            self.log(f"checkpoint: {path}")

    def _sync_moving_statistics(self):
        """Workers' BN statistics drift apart (each sees its own batches): average them so that
        evaluation and checkpoints use one model."""
        if self.backend.size > 1:
            stats = self.net.moving_statistics()
            if self.ema is not None:
                stats = stats + self.ema.statistics_averages()
            for v, mean in zip(stats, self.backend.average([v.read_value() for v in stats])):
                v.assign(mean)

    # -- evaluate --------------------------------------------------------------------------
    def evaluate(self, step=None, epoch=None, *, precise_bn_sec=None):
        """One exact pass over the validation split (or validation_steps batches per worker)
        with the net's weights and, with a weight average, one more with the average; metrics
        summed over workers. With precise_bn_batches, BN statistics are recomputed first
        (unless precise_bn_sec says it was just done). Returns {loss, top1, top5, examples} of
        the net's weights, and the average's under ema_ keys."""
        if step is None:
            step, epoch = (int(v) for v in observe.to_host([self.optimizer.iterations,
                                                             self.epoch]))
        if precise_bn_sec is None:
            precise_bn_sec = self._precise_bn(step, epoch)
        self._warn_if_statistics_unsettled(step)
        metrics = self._evaluate_pass("validation", step, epoch, precise_bn_sec)
        if self.ema is not None:
            with self.ema.swapped_in():
                averaged = self._evaluate_pass("validation_ema", step, epoch,
                                               self._precise_bn(step, epoch))
            metrics.update({f"ema_{k}": v for k, v in averaged.items()})
        return metrics

    def _precise_bn(self, step, epoch):
        """Recomputes the BN statistics (precise_bn_batches of them); seconds, or None if off."""
        batches = self.config.precise_bn_batches
        if not batches:
            return None
        start = time.perf_counter()
        self.watchdog.expect("recomputing batch-norm statistics", step, long=True)
        data = self.data.train_dataset(
            self.local_batch, shard_index=self.backend.rank, num_shards=self.backend.size,
            seed=precise_bn.stream_seed(self.config.seed, epoch))
        precise_bn.recompute(self.net, (images for images, _ in data.take(batches)),
                             self.backend)
        return round(time.perf_counter() - start, 3)

    def _warn_if_statistics_unsettled(self, step):
        """Moving averages keep momentum^updates of their initial values: below about
        3 / (1 - momentum) updates (5% left) evaluation reads statistics of no data."""
        norms = self.net.batch_norms()
        if self.config.precise_bn_batches or not norms:
            return
        momentum = norms[0].momentum
        updates = step * self.train_step.grad_accum_steps
        left = precise_bn.unsettled_share(updates, momentum)
        if left is not None:
            self.log(f"warning: after {updates} updates the batch-norm moving averages "
                     f"(momentum {momentum}) still hold {left:.0%} of their initial values, so "
                     f"this evaluation may be far off; use --precise_bn_batches (e.g. 8192 / "
                     f"batch size) or a smaller --bn_momentum")

    def _evaluate_pass(self, split, step, epoch, precise_bn_sec):
        batches = self.data.eval_batches(self.local_batch, self.backend.size)
        if self.config.validation_steps:
            batches = min(batches, self.config.validation_steps)
        dataset = self.data.eval_dataset(self.local_batch, shard_index=self.backend.rank,
                                         num_shards=self.backend.size)
        start = time.perf_counter()
        for i, (images, labels, mask) in enumerate(dataset.take(batches)):
            self.watchdog.expect(f"evaluation batch {i + 1}", step, long=True)
            self.eval_step(images, labels, mask)
        metrics = self.eval_step.metrics.read_and_reset(self.backend)
        record = {"split": split, "step": step, "epoch": epoch, **metrics,
                  "seconds": round(time.perf_counter() - start, 3),
                  "elapsed_sec": round(self.elapsed_seconds(), 3)}
        if precise_bn_sec is not None:
            record["precise_bn_sec"] = precise_bn_sec
        self.recorder.write(record)
        self.recorder.scalars(split, step, {k: metrics[k] for k in ("loss", "top1", "top5")})
        self.log(observe.format_eval(record))
        return metrics

    def evaluate_checkpoint(self, path):
        self.optimizer.build(self.train_step.variables)
        self.checkpoints.restore(path, expect_partial=True)
        return self.evaluate()


class _NoWatchdog:
    def expect(self, what, step, *, long=False, steps=1):
        pass
