"""A run's state beyond the net and optimizer (epoch, training time, worker and micro-batch slot
counts), the checkpoints that hold it all, and the start of a run segment: optimizer slots
built, the latest checkpoint (or --resume_from_checkpoint_path) restored on rank 0, its state
broadcast."""
import time

import tensorflow as tf

from engine import checkpoints, observe
from engine import slots as slot_rule


class RunState:
    """`train_step` owns the net, optimizer and weight average; `watchdog` the stall
    watchdog (engine/watchdog.py), armed before each wait; `log` prints (the chief's)."""

    def __init__(self, *, train_step, backend, model_dir, keep_checkpoints, steps_per_epoch,
                 log, watchdog):
        self.train_step, self.backend, self.log, self.watchdog = train_step, backend, log, watchdog
        self.steps_per_epoch = steps_per_epoch
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Training time summed over the run's segments (a resumed run goes on counting).
        self.elapsed = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="elapsed")
        # The worker count that wrote a checkpoint: a resume on another count says what changes.
        self.workers = tf.Variable(backend.size, dtype=tf.int64, trainable=False, name="workers")
        # The run's micro-batch slots (workers x micro-batches): its training math, which a
        # resume on any worker count that divides it continues exactly.
        self.slot_count = backend.size * train_step.micro_batches
        self.slots = tf.Variable(self.slot_count, dtype=tf.int64, trainable=False, name="slots")
        self._segment_start, self._elapsed_before = time.perf_counter(), 0.0
        ema = train_step.ema
        self.checkpoints = checkpoints.Checkpoints(
            f"{model_dir}/checkpoints", keep=keep_checkpoints, is_chief=backend.is_chief,
            log=log, optional=("elapsed", "ema", "workers", "slots"), net=train_step.net,
            optimizer=train_step.optimizer, epoch=self.epoch, elapsed=self.elapsed,
            workers=self.workers, slots=self.slots, **({"ema": ema} if ema is not None else {}))

    def start(self, *, allow_fresh_start=False, resume_from=None, resume_from_epoch=None,
              allow_redeal=False):
        """Restores the latest checkpoint in model_dir, else `resume_from` (at
        `resume_from_epoch` when given), and broadcasts rank 0's state. Returns (step, the
        restored path or None, the worker count that wrote it or None, its slot count or
        None). A checkpoint of another slot count is refused unless `allow_redeal`."""
        slots = self.slot_count
        self.watchdog.expect("restoring and broadcasting the starting state", 0, long=True)
        self.train_step.build()
        # Rank 0 alone reads checkpoints and the others take its state by broadcast: hosts
        # without a shared file system hold the run's files on rank 0's host only.
        restored = None
        if self.backend.is_chief:
            for path in self.checkpoints.remove_leftovers():
                self.log(f"removed {path}, what a checkpoint write that did not finish left")
            restored = self.checkpoints.restore_latest(allow_fresh_start)
            if restored is None and resume_from:
                restored = self.checkpoints.restore(resume_from)
                if resume_from_epoch is not None:
                    self.epoch.assign(resume_from_epoch)
                    self.train_step.optimizer.iterations.assign(
                        resume_from_epoch * self.steps_per_epoch)
        missing = self.checkpoints.missing if restored else []
        found = tf.Variable([int(bool(restored))] + [int(part not in missing)
                                                      for part in ("ema", "workers", "slots")],
                            dtype=tf.int64, trainable=False)
        # Rank 0's weights, statistics, slots and counters everywhere (one broadcast, before
        # step 1, after the slots exist).
        self.backend.broadcast_variables(self.train_step.shared_variables()
                                         + [self.epoch, self.elapsed, self.workers, self.slots,
                                            found])
        was_restored, has_ema, has_workers, has_slots = (bool(v) for v in found.numpy())
        restored = restored or ("the restored checkpoint" if was_restored else None)
        ema = self.train_step.ema
        if ema is not None and (not restored or not has_ema):
            if restored:
                self.log(f"{restored} holds no weight average: it starts from the restored "
                         f"weights")
            ema.reset()  # from the broadcast weights
        step, epoch, elapsed, workers, had_slots = observe.to_host(
            [self.train_step.optimizer.iterations, self.epoch, self.elapsed, self.workers,
             self.slots])
        step = int(step)
        self.epoch.assign(step // self.steps_per_epoch)
        self._segment_start, self._elapsed_before = time.perf_counter(), float(elapsed)
        writers = written_slots = None
        if restored:
            if has_slots:
                written_slots = int(had_slots)
                slot_rule.check_checkpoint(restored, written=written_slots, slots=slots,
                                           workers=self.backend.size,
                                           allow_redeal=allow_redeal)
            self.log(f"resumed from {restored} at step {step}, epoch {int(epoch)}")
            if has_workers:
                writers = int(workers)
        self.workers.assign(self.backend.size)
        self.slots.assign(slots)
        return step, restored, writers, written_slots

    def start_from_memory(self, *, elapsed):
        """Starts a run segment from the state already in memory (an elastic training's state,
        synchronized from rank 0 after the workers changed), `elapsed` seconds of training
        before it; returns its step."""
        self.train_step.build()
        step = int(observe.to_host([self.train_step.optimizer.iterations])[0])
        self.epoch.assign(step // self.steps_per_epoch)
        self._segment_start, self._elapsed_before = time.perf_counter(), float(elapsed)
        return step

    def restore_for_evaluation(self, path):
        """Restores a checkpoint's net (and weight average) to evaluate it; (step, epoch)."""
        self.train_step.build()
        self.checkpoints.restore(path, expect_partial=True)
        step, epoch = observe.to_host([self.train_step.optimizer.iterations, self.epoch])
        return int(step), int(epoch)

    def elapsed_seconds(self):
        return self._elapsed_before + time.perf_counter() - self._segment_start

    def save(self, step, recorder):
        """A checkpoint at `step` (rank 0 writes), metrics.jsonl made durable first."""
        self.watchdog.expect("writing a checkpoint", step, long=True)
        self.elapsed.assign(self.elapsed_seconds())
        recorder.sync()
        path = self.checkpoints.save(step)
        if path:
            self.log(f"checkpoint: {path}")
        return path
