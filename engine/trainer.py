"""The Trainer: a run's parts put together. It owns what happens between steps (orbit's split;
the steps are in engine/step.py): the run's state and checkpoints (engine/run_state.py),
evaluation (engine/evaluation.py), step dispatch (engine/runner.py) and the loop's hooks
(engine/hooks/), which the controller (engine/controller.py) drives.
Rank 0 writes checkpoints, metrics.jsonl and TensorBoard events; every rank computes.
"""
import dataclasses
from typing import Optional, Sequence, Tuple

import tensorflow as tf

from engine import hooks, observe, run_format
from engine.best import BestCheckpoint
from engine.controller import Controller, Hook
from engine.evaluation import Evaluator
from engine.run_state import RunState
from engine.runner import StepRunner
from engine.step import TrainStep
from engine.time_to_accuracy import StopAtTarget


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What the loop needs to know; fields that mirror a flag of launch.train carry its name."""
    model_dir: str
    batch_size: int                          # global: each worker takes batch_size / workers
    epochs: int
    steps_per_epoch: int
    validation_steps: Optional[int] = None   # None: the whole split; 0: no evaluation
    validation_freq: int = 1                 # evaluate every N epochs (and after the last)
    seed: int = 0
    log_steps: int = 100
    save_summary_steps: Optional[int] = None  # TensorBoard scalars every N steps (None: off)
    checkpoint_steps: Optional[int] = None   # also checkpoint every N steps (epoch ends always)
    keep_checkpoints: int = 5
    steps_per_loop: Optional[int] = None     # steps per call; None: fitted (hooks.Pace)
    stop_within: float = 20.0                # seconds from a stop request to its checkpoint
    profile_steps: Optional[Tuple[int, int]] = None
    resume_from_checkpoint_path: Optional[str] = None  # used when model_dir holds none
    resume_from_epoch: Optional[int] = None  # its epoch, when the checkpoint does not say
    allow_fresh_start: bool = False
    progress: bool = False                   # a live progress line on a terminal
    precise_bn_batches: int = 0              # BN statistics recomputed before evaluating
    allow_redeal: bool = False               # resume a checkpoint of another slot count
    keep_best: Optional[str] = None          # keep the best checkpoint by this metric (best.py)
    target_accuracy: Optional[float] = None  # stop at the first evaluation with top-1 >= it


class _NoWatchdog:
    def expect(self, what, step, *, long=False, busy_seconds=0.0):
        pass


class Trainer:
    """Epochs of train steps with exact evaluation, checkpoints, metrics and profiling.

    `train()` runs to `config.epochs` (resuming from model_dir's latest checkpoint) and returns
    a summary; `evaluate()` runs one exact validation pass; `evaluate_checkpoint(path)`
    evaluates a checkpoint. `train_step` owns the net, optimizer and weight average; `hooks`
    are more Hooks, run after the built-in ones."""

    def __init__(self, *, train_step: TrainStep, data, backend, config: TrainConfig,
                 watchdog=None, tensor_dumps=None, hooks: Sequence[Hook] = (), log=print,
                 before_checkpoint=None):
        self.train_step, self.data, self.backend, self.config = (train_step, data, backend,
                                                                 config)
        # Called with the step before each checkpoint is written (elastic training commits
        # there, so that a checkpoint holds a committed state).
        self.before_checkpoint = before_checkpoint
        self.watch = (watchdog or _NoWatchdog()).expect
        # The training segment's Pace (engine/hooks/pace.py) once train() runs: its stop checks
        # are the boundaries where elastic training commits.
        self.pace = None
        self.tensor_dumps, self.extra_hooks = tensor_dumps, list(hooks)
        self.console = observe.Console(print_fn=log, enabled=backend.is_chief)
        self.log = self.console.log
        self.local_batch = config.batch_size // backend.size
        self.recorder = run_format.Recorder(config.model_dir, backend.is_chief)
        self.state = RunState(train_step=train_step, backend=backend, model_dir=config.model_dir,
                              keep_checkpoints=config.keep_checkpoints,
                              steps_per_epoch=config.steps_per_epoch, log=self.log,
                              watch=self.watch)
        self.evaluator = Evaluator(
            train_step=train_step, data=data, backend=backend, local_batch=self.local_batch,
            seed=config.seed, validation_steps=config.validation_steps,
            precise_bn_batches=config.precise_bn_batches, recorder=self.recorder,
            log=self.log, elapsed=self.state.elapsed_seconds, watch=self.watch,
            validation_freq=config.validation_freq, epochs=config.epochs)
        # What follows an evaluation, in order: the best checkpoint first (a run that stops at
        # its target keeps that evaluation's checkpoint as the best too).
        self.after_evaluation = []
        if config.keep_best:
            self.after_evaluation.append(BestCheckpoint(
                config.model_dir, metric=config.keep_best,
                checkpoint=self.state.checkpoints.checkpoint, recorder=self.recorder,
                log=self.log))
        if config.target_accuracy:
            self.after_evaluation.append(StopAtTarget(
                target=config.target_accuracy, recorder=self.recorder,
                global_batch=config.batch_size, elapsed=self.state.elapsed_seconds,
                any_worker=backend.any))

    def save(self, step):
        if self.before_checkpoint is not None:
            self.before_checkpoint(step)
        return self.state.save(step, self.recorder)

    def train(self, *, in_memory_elapsed: Optional[float] = None):
        """Trains to the last epoch from model_dir's latest checkpoint, or (elastic training,
        `in_memory_elapsed` the seconds trained so far) from the state already in memory."""
        cfg = self.config
        if in_memory_elapsed is None:
            step, _, writers, slots = self.state.start(
                allow_fresh_start=cfg.allow_fresh_start,
                resume_from=cfg.resume_from_checkpoint_path,
                resume_from_epoch=cfg.resume_from_epoch, allow_redeal=cfg.allow_redeal)
            if writers is not None and writers != self.backend.size:
                self.log(self._worker_change_note(writers,
                                                  redealt=slots != self.state.slot_count))
        else:
            step = self.state.go_on(elapsed=in_memory_elapsed)
        self.recorder.truncate_after(step)
        for follower in self.after_evaluation:
            follower.begin(step)
        missing = self.evaluator.evaluate_if_missing(step, cfg.steps_per_epoch)
        if missing is not None:
            for follower in self.after_evaluation:
                follower.evaluated(step, step // cfg.steps_per_epoch, missing)
        iterator = iter(self.data.train_dataset(
            self.local_batch, shard_index=self.backend.rank, num_shards=self.backend.size,
            seed=cfg.seed, start_example=step * self.local_batch,
            micro_batches=self.train_step.grad_accum_steps))
        meter = observe.Throughput(cfg.batch_size)
        pace = self.pace = hooks.Pace(agree=self._agreed_seconds, stop_within=cfg.stop_within,
                                      steps_per_call=cfg.steps_per_loop, log=self.log)
        runner = StepRunner(train_step=self.train_step, iterator=iterator, meter=meter,
                            watch=self.watch, step_seconds=lambda: pace.step_seconds,
                            loops=cfg.steps_per_loop != 1)
        loop_hooks, epoch_end = self._hooks(runner, meter, pace)
        controller = Controller(
            run_steps=runner, hooks=loop_hooks + self.extra_hooks,
            total_steps=cfg.epochs * cfg.steps_per_epoch, steps_per_call=pace.steps_per_call,
            first_nonfinite_step=self.train_step.first_nonfinite_step, watch=self.watch)
        step = controller.train(step)
        summary = {"steps": step, "images_per_sec": meter.overall()}
        if epoch_end.last_evaluation:
            summary.update({f"validation_{k}": v for k, v in epoch_end.last_evaluation.items()})
        return summary

    def _hooks(self, runner, meter, pace):
        """The built-in hooks, in the order they run at a boundary (`pace` first); and the
        EpochEnd among them."""
        cfg, chief = self.config, self.backend.is_chief
        train_log = hooks.TrainLog(
            train_step=self.train_step, backend=self.backend, recorder=self.recorder,
            meter=meter, log=self.log, log_steps=cfg.log_steps,
            summary_steps=cfg.save_summary_steps, steps_per_epoch=cfg.steps_per_epoch,
            quiet=cfg.progress)
        epoch_end = hooks.EpochEnd(steps_per_epoch=cfg.steps_per_epoch, epoch=self.state.epoch,
                                   evaluator=self.evaluator, save=self.save,
                                   after_evaluation=self.after_evaluation)
        out = [pace, train_log,
               hooks.PeriodicCheckpoint(every=cfg.checkpoint_steps,
                                        steps_per_epoch=cfg.steps_per_epoch, save=self.save),
               hooks.StopOnSignal(any_worker=self.backend.any, save=self.save),
               epoch_end]
        window = dict(runner=runner, recorder=self.recorder, batch_size=cfg.batch_size,
                      log=self.log)
        if cfg.profile_steps:
            out.append(hooks.ProfileWindow(model_dir=cfg.model_dir, capture=chief,
                                           window=cfg.profile_steps, **window))
        if self.tensor_dumps is not None:
            out.append(hooks.DumpWindow(dumps=self.tensor_dumps, train_step=self.train_step,
                                        **window))
        if cfg.progress and chief:
            out.append(hooks.ProgressLine(total_steps=cfg.epochs * cfg.steps_per_epoch,
                                          global_batch=cfg.batch_size, train_log=train_log,
                                          console=self.console))
        return out, epoch_end

    def _agreed_seconds(self, seconds):
        """The workers' average of a time each measured, the same on every worker."""
        return float(observe.to_host(self.backend.average([tf.constant(seconds)]))[0])

    def _worker_change_note(self, before, *, redealt):
        """What resuming on another worker count changes (one line)."""
        now = self.backend.size
        if not redealt:
            n = self.train_step.grad_accum_steps
            return (f"resuming on {now} worker{'s' * (now > 1)} a run that {before} worker"
                    f"{'s' * (before > 1)} checkpointed: its {self.state.slot_count} "
                    f"micro-batch slots now run {n} per worker; the run goes on exactly as it "
                    f"would have")
        return (f"resuming on {now} worker{'s' * (now > 1)} a run that {before} worker"
                f"{'s' * (before > 1)} checkpointed: each worker now takes "
                f"{self.local_batch} of the {self.config.batch_size} examples per step from "
                f"its own shard; the rest of the interrupted pass over the training data is "
                f"dealt from the new shards' order, so until it ends some examples may come "
                f"twice and others not at all; later passes see each example once")

    def evaluate(self):
        """One exact evaluation at the current step (precise BN first when configured)."""
        step, epoch = (int(v) for v in observe.to_host([self.train_step.optimizer.iterations,
                                                         self.state.epoch]))
        return self.evaluator.recompute_and_evaluate(step, epoch)

    def evaluate_checkpoint(self, path):
        step, epoch = self.state.restore_for_evaluation(path)
        return self.evaluator.recompute_and_evaluate(step, epoch)
