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
from engine.hooks import windows
from engine.run_state import RunState
from engine.runner import StepRunner
from engine.step import TrainStep
from engine.time_to_accuracy import StopAtTarget
from engine.watchdog import NoWatchdog


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
    steps_per_loop: Optional[int] = None     # steps per call; None: fitted (hooks.StopChecks)
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


class Trainer:
    """Epochs of train steps with exact evaluation, checkpoints, metrics and profiling.

    `train()` runs to `config.epochs` (resuming from model_dir's latest checkpoint) and returns
    a summary; `evaluate()` runs one exact validation pass; `evaluate_checkpoint(path)`
    evaluates a checkpoint; `resize()` follows a change of workers (elastic training).
    `train_step` owns the net, optimizer and weight average; `log` prints the chief's lines and
    `out` is the terminal of its progress line."""

    def __init__(self, *, train_step: TrainStep, data, backend, config: TrainConfig,
                 watchdog=None, tensor_dumps=None, log=print, out=None):
        self.train_step, self.data, self.backend, self.config = (train_step, data, backend,
                                                                 config)
        self.watchdog = watchdog or NoWatchdog()
        self.tensor_dumps = tensor_dumps
        self._segment_start_step = None
        self.console = observe.Console(print_fn=log, out=out)
        # The pace of each segment (engine/hooks/pace.py): its stop checks are the boundaries
        # where elastic training commits.
        self.step_timer = hooks.StepTimer(agree=self._agreed_seconds)
        self.stop_checks = hooks.StopChecks(timer=self.step_timer, stop_within=config.stop_within,
                                            steps_per_call=config.steps_per_loop,
                                            log=self.console.log)
        self._controller = None  # the running segment's
        self._follow_workers()

    def _follow_workers(self):
        """What depends on the workers (their count, this worker's rank and whether it is the
        chief): built at the start and again by resize()."""
        cfg, backend = self.config, self.backend
        self.console.enabled = backend.is_chief
        self.log = self.console.log
        self.local_batch = cfg.batch_size // backend.size
        self.recorder = run_format.Recorder(cfg.model_dir, backend.is_chief)
        self.state = RunState(train_step=self.train_step, backend=backend,
                              model_dir=cfg.model_dir, keep_checkpoints=cfg.keep_checkpoints,
                              steps_per_epoch=cfg.steps_per_epoch, log=self.log,
                              watchdog=self.watchdog)
        self.evaluator = Evaluator(
            train_step=self.train_step, data=self.data, backend=backend,
            local_batch=self.local_batch, seed=cfg.seed, validation_steps=cfg.validation_steps,
            precise_bn_batches=cfg.precise_bn_batches, recorder=self.recorder, log=self.log,
            elapsed=self.state.elapsed_seconds, watchdog=self.watchdog,
            validation_freq=cfg.validation_freq, epochs=cfg.epochs)

    def resize(self, *, micro_batches: int, seed: int, tensor_dumps=None):
        """The workers changed (elastic training; the backend already has its new rank and
        size): each now runs `micro_batches` of the run's slots per step, with the run's `seed`
        (rank 0's), and what depends on the workers is derived again. The net, optimizer and
        weight average (the state in memory) are kept."""
        self.train_step.resize(micro_batches=micro_batches, seed=seed)
        self.tensor_dumps = tensor_dumps
        self._follow_workers()

    def steps_run(self) -> int:
        """Steps applied since this process's training segment started (0 before one started;
        a device read): whether a failing step had run before."""
        if self._segment_start_step is None:
            return 0
        return int(observe.to_host([self.train_step.optimizer.iterations])[0]) - \
            self._segment_start_step

    def save(self, step):
        """Writes the checkpoint of `step`, after telling the hooks (Hook.before_checkpoint:
        elastic training commits there, so that a checkpoint holds a committed state)."""
        if self._controller is not None:
            self._controller.checkpointing(step)
        return self.state.save(step, self.recorder)

    def train(self, *, in_memory_elapsed: Optional[float] = None, hooks: Sequence[Hook] = ()):
        """Trains to the last epoch from model_dir's latest checkpoint, or (elastic training,
        `in_memory_elapsed` the seconds trained so far) from the state already in memory.
        `hooks`: more Hooks for this segment, run after the built-in ones."""
        cfg = self.config
        step = self._start() if in_memory_elapsed is None else \
            self.state.start_from_memory(elapsed=in_memory_elapsed)
        self._segment_start_step = step
        self.recorder.truncate_after(step)
        iterator = iter(self.data.train_dataset(
            self.local_batch, worker=self.backend.rank, workers=self.backend.size,
            seed=cfg.seed, start_example=step * self.local_batch,
            micro_batches=self.train_step.micro_batches))
        meter = observe.Throughput(cfg.batch_size)
        loop_hooks, epoch_end = self._hooks(meter)
        runner = StepRunner(train_step=self.train_step, iterator=iterator, meter=meter,
                            watchdog=self.watchdog, step_seconds=lambda: self.step_timer.seconds,
                            loops=cfg.steps_per_loop != 1,
                            plain_single_steps_until=windows.last_window_end(loop_hooks))
        self._controller = Controller(
            run_steps=runner, hooks=loop_hooks + list(hooks),
            total_steps=cfg.epochs * cfg.steps_per_epoch,
            steps_per_call=self.stop_checks.steps_per_call,
            first_nonfinite_step=self.train_step.first_nonfinite_step, watchdog=self.watchdog)
        try:
            step = self._controller.train(step)
        finally:
            self._controller = None
        summary = {"steps": step, "images_per_sec": meter.overall()}
        if epoch_end.last_evaluation:
            summary.update({f"validation_{k}": v for k, v in epoch_end.last_evaluation.items()})
        return summary

    def _start(self):
        """A segment's start from model_dir's latest checkpoint (or the one to resume from),
        saying what a change of workers since it changes; its step."""
        cfg = self.config
        step, _, writers, slots = self.state.start(
            allow_fresh_start=cfg.allow_fresh_start, resume_from=cfg.resume_from_checkpoint_path,
            resume_from_epoch=cfg.resume_from_epoch, allow_redeal=cfg.allow_redeal)
        if writers is not None and writers != self.backend.size:
            self.log(self._worker_change_note(writers, redealt=slots != self.state.slot_count))
        return step

    def _hooks(self, meter):
        """The built-in hooks, in the order they run (the pace first; what acts on evaluations
        before EpochEnd, which may evaluate as it begins); and the EpochEnd among them."""
        cfg, chief = self.config, self.backend.is_chief
        train_log = hooks.TrainLog(
            train_step=self.train_step, backend=self.backend, recorder=self.recorder,
            meter=meter, log=self.log, log_steps=cfg.log_steps,
            summary_steps=cfg.save_summary_steps, steps_per_epoch=cfg.steps_per_epoch,
            quiet=cfg.progress)
        epoch_end = hooks.EpochEnd(steps_per_epoch=cfg.steps_per_epoch, epoch=self.state.epoch,
                                   evaluator=self.evaluator, save=self.save,
                                   announce=self._announce_evaluation)
        out = [self.step_timer, self.stop_checks, train_log,
               hooks.PeriodicCheckpoint(every=cfg.checkpoint_steps,
                                        steps_per_epoch=cfg.steps_per_epoch, save=self.save),
               hooks.StopOnSignal(any_worker=self.backend.any, save=self.save)]
        # The best checkpoint first: a run that stops at its target keeps that evaluation's
        # checkpoint as the best too.
        if cfg.keep_best:
            out.append(BestCheckpoint(cfg.model_dir, metric=cfg.keep_best,
                                      checkpoint=self.state.checkpoints.checkpoint,
                                      recorder=self.recorder, log=self.log))
        if cfg.target_accuracy:
            out.append(StopAtTarget(target=cfg.target_accuracy, recorder=self.recorder,
                                    global_batch=cfg.batch_size,
                                    elapsed=self.state.elapsed_seconds,
                                    any_worker=self.backend.any))
        out.append(epoch_end)
        window = dict(recorder=self.recorder, batch_size=cfg.batch_size, log=self.log)
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

    def _announce_evaluation(self, step, epoch, metrics):
        self._controller.evaluated(step, epoch, metrics)

    def _agreed_seconds(self, seconds):
        """The workers' average of a time each measured, the same on every worker."""
        return float(observe.to_host(self.backend.average([tf.constant(seconds)]))[0])

    def _worker_change_note(self, before, *, redealt):
        """What resuming on another worker count changes (one line)."""
        now = self.backend.size
        if not redealt:
            n = self.train_step.micro_batches
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
