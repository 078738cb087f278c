"""The outer loop: epochs of steps, exact evaluation, checkpoints, logs, profiling, stops.

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
        self._profiling = False
        # engine.tensor_dumps.TensorDumps of a window of steps (None: off, or not this rank).
        self.dumps, self._dump_function, self._dump_batch = tensor_dumps, None, None
        self._dump_start = None
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
        self._segment_first_step = step
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
            self._stop_dumps()
        progress.close()
        self._stop_profiler(step)
        summary = {"steps": step, "images_per_sec": meter.overall()}
        if last_eval:
            summary.update({f"validation_{k}": v for k, v in last_eval.items()})
        return summary

    def _window_edges(self):
        windows = [self.config.profile_steps, self.dumps.window if self.dumps else None]
        return tuple(edge for window in windows if window for edge in window)

    def _epochs(self, iterator, step, total_steps, meter, progress):
        """Epochs of steps from `step` to `total_steps`; (last step, last evaluation)."""
        cfg, last_eval = self.config, None
        while step < total_steps:
            epoch = step // cfg.steps_per_epoch
            self.epoch.assign(epoch)
            epoch_end = (epoch + 1) * cfg.steps_per_epoch
            while step < epoch_end:
                chunk_end = next_boundary(
                    step, limit=min(epoch_end, step + self._steps_per_call(step)),
                    every=(cfg.log_steps, cfg.checkpoint_steps, cfg.save_summary_steps),
                    at=self._window_edges())
                self._maybe_profile(step)
                self._maybe_dump(step)
                self._run(iterator, step, chunk_end - step, meter)
                step = chunk_end
                logging = (itstime(step, cfg.log_steps, last=epoch_end)
                           or itstime(step, cfg.save_summary_steps))
                checkpointing = itstime(step, cfg.checkpoint_steps) and step != epoch_end
                progress.update(step, meter)  # host-side only: steps and time
                if not (logging or checkpointing or step == epoch_end
                        or step in self._window_edges()
                        or (self.dumps is not None and self.dumps.active)):
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
            with observe.step_marker(step + 1, enabled=self._profiling):
                wait_start = time.perf_counter()
                self.watchdog.expect("the input pipeline", step, long=first)
                with observe.input_wait_marker(enabled=self._profiling):
                    images, labels = next(iterator)
                waited = time.perf_counter() - wait_start
                self.watchdog.expect("the train step (the device or the gradient all-reduce)",
                                     step, long=first or self._dump_function is not None)
                if self._dump_function is not None:
                    self._dump_function(images, labels)
                    self._dump_batch = (images, labels)
                else:
                    self.train_step(images, labels)
                if self._profiling:  # so that each marked step holds its own device time
                    observe.to_host([self.train_step.nonfinite_step])
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
                                f"{self._first_nonfinite_op()}")

    def _first_nonfinite_op(self):
        """With tensor dumps of the bad step: which op first held NaN or Inf, from the dump."""
        if self._dump_function is None:
            return ""
        found = self.dumps.first_nonfinite(*self._dump_batch)
        self._dump_function = None
        if found is None:
            return (f"; the tensor dumps in {self.dumps.dump_root} hold no op output with NaN "
                    f"or Inf (--dump_mode={self.dumps.mode} records none, or the buffer kept "
                    f"too few op executions: raise --dump_buffer_size)")
        return (f"; first op whose output held NaN or Inf: {found.describe()} (tensor dumps in "
                f"{self.dumps.dump_root})")

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

    # -- profiling -------------------------------------------------------------------------
    def _steps_per_call(self, step):
        """Inside the profiler's window steps run one per call, so that each is marked in the
        profile; the step before it too, so that tracing the one-step call stays outside.
        Inside the tensor-dump window too, so that a bad step stops the run at once, with its
        op executions the last ones in the dump's buffer."""
        for window in (self.config.profile_steps, self.dumps.window if self.dumps else None):
            if window and window[0] - 1 <= step < window[1]:
                return 1
        return self.config.steps_per_loop

    def _maybe_profile(self, step):
        window = self.config.profile_steps
        if not window or not self.backend.is_chief:
            return
        if step == window[0]:
            tf.profiler.experimental.start(f"{self.config.model_dir}/train")
            self._profiling = True
            self._window_start = (step, time.perf_counter())
            self.log(f"profiler: capturing steps {window[0] + 1}-{window[1]}, one step per call; "
                     f"read it with python -m launch.profile {self.config.model_dir}")
        elif step == window[1]:
            self._stop_profiler(step)

    def _stop_profiler(self, step):
        """Ends the capture and records the window's rate (the cost of profiling, read against
        the train records outside the window) and the first step of this run segment (which
        lets launch.profile number the Horovod timeline's steps)."""
        if not self._profiling:
            return
        tf.profiler.experimental.stop()
        self._profiling = False
        self._record_window("profile", self._window_start, step)
        self.log(f"profiler: trace written under {self.config.model_dir}/train/plugins/profile")

    def _record_window(self, split, started, step):
        """A metrics.jsonl record of a profile or dump window: its steps and images/s."""
        first, start = started
        if step <= first:
            return None
        rate = round((step - first) * self.config.batch_size
                     / max(time.perf_counter() - start, 1e-9), 2)
        record = {"split": split, "step": step, "first_step": first + 1,
                  "segment_first_step": self._segment_first_step + 1, "images_per_sec": rate}
        self.recorder.write(record)
        return observe.window_cost(self.recorder.records(), split, step)

    def _maybe_dump(self, step):
        if self.dumps is None:
            return
        window = self.dumps.window
        if step == window[0]:
            self._dump_function = self.dumps.start(self.train_step)
            self._dump_start = None  # timed from the end of the first step (its tracing)
            self.log(f"tensor dumps: steps {window[0] + 1}-{window[1]} into "
                     f"{self.dumps.dump_root} ({self.dumps.mode}, the last "
                     f"{self.dumps.buffer_size} op executions kept)")
        elif step == window[1]:
            self._stop_dumps(step)
        elif step == window[0] + 1 and self.dumps.active:
            self._dump_start = (step, time.perf_counter())

    def _stop_dumps(self, step=None):
        """Writes the dump out (also when the run ends inside the window or fails)."""
        if self.dumps is None or not self.dumps.active:
            return
        self.dumps.stop()
        self._dump_function = self._dump_batch = None
        cost = None
        if step is not None and self._dump_start:
            cost = self._record_window("tensor_dumps", self._dump_start, step)
        if not self.dumps.writes:
            return
        self.log(f"tensor dumps: written to {self.dumps.dump_root} (open it with tensorboard "
                 f"--logdir {self.dumps.dump_root}, Debugger V2)"
                 + (f"; cost: {observe.describe_cost(cost)}" if cost else ""))

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
