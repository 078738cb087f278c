"""A training run's plan: every decision of the run, in one frozen value, made from the flags once.

    planned = plan.from_flags(FLAGS)        # what the command asks: the one reader of the flags
    data = build_run.open_input(planned, log=log)
    mine = plan.local_settlement(planned, bf16=..., is_chief=..., log=log)
    planned = planned.settle(plan.agreed_settlement(mine, backend=backend),
                             workers=backend.size, data=data)

`from_flags` copies what the command asks into the plan; nothing after it reads the flags. The
run then settles what the flags leave open - the seed, the dtype of --dtype=auto, the slots a
resumed run recorded, the steps per epoch and classes of the data - each worker alone
(`local_settlement`) and, outside elastic training, rank 0's values on every worker in one
exchange (`agreed_settlement`). What depends on the worker count is `for_workers(n)`, which is
also all that elastic training's re-entry recomputes. flags.txt is written from the plan
(`flagfile()`), so a rerun from it makes the same plan.
"""
import dataclasses
import random
import sys
from typing import Optional, Tuple

from absl import flags

import engine
import input as inputs
from engine import slots as slot_rule
from input import augment, mixing
from launch import hardware, train_flags
from launch.errors import CommandError

COMPUTE_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # --dtype -> nets' compute_dtype


@dataclasses.dataclass(frozen=True)
class InputPlan:
    """The input module: its name and what input.build takes."""
    name: str
    options: inputs.InputOptions
    mixing: Optional[mixing.Mixing]
    dataset_dir: Optional[str]
    train_subset: str
    val_subset: str
    num_classes: Optional[int]   # --num_classes; None: the data's own


@dataclasses.dataclass(frozen=True)
class NetPlan:
    """The net: nets.build(model, **options) once the run's dtype, seed and classes are known;
    initialized from `init_checkpoint` (a checkpoint or a Keras .h5) when given."""
    model: str
    options: Tuple[Tuple[str, object], ...]
    init_checkpoint: Optional[str] = None
    init_skip_head: bool = False


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """The train step: optimizer, schedule, loss terms, weight average, compilation."""
    optimizer: str
    momentum: float
    lars_eta: float
    lars_epsilon: float
    weight_decay: float
    weight_decay_mode: str
    lr_schedule: str
    initial_lr: float
    warmup_epochs: float
    label_smoothing: float
    ema_decay: Optional[float]
    jit_compile: bool
    clip_grad_norm: Optional[float]


@dataclasses.dataclass(frozen=True)
class MachinePlan:
    """How the run uses its machine: thread pools, device, Horovod's settings, determinism."""
    pools: hardware.ThreadPools
    run_on_hpu: bool
    use_hpu_strategy: bool
    fp16_allreduce: bool
    horovod_timeline: Optional[str]
    deterministic: bool
    data_format: str
    stall_timeout: int        # seconds without progress before the watchdog ends the job; 0 off
    stall_timeout_long: int   # the same for the first step (tracing)


@dataclasses.dataclass(frozen=True)
class DumpPlan:
    """--dump_tensors: where, which steps, how much; on every worker or rank 0's only."""
    root: str
    window: Tuple[int, int]
    mode: str
    buffer_size: int
    all_ranks: bool


@dataclasses.dataclass(frozen=True)
class Settlement:
    """What the flags leave open and every worker must hold alike: the seed, the dtype, the slot
    count the run's checkpoints recorded (None: a fresh run, or one from before slots)."""
    seed: int
    dtype: str
    recorded_slots: Optional[int]


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Every decision of a training run. Built by `from_flags`; `settle` fills what the run
    decides at its start; `for_workers` what a worker count decides."""
    dtype_asked: str              # --dtype as given: auto, fp32 or bf16
    dtype: str                    # the compute dtype: --dtype, auto resolved once settled
    micro_batch_size_asked: Optional[int]
    micro_batches_asked: int      # --micro_batches: micro-batches per worker and step
    micro_batches_given: bool     # whether the command gave it
    num_classes: Optional[int]    # once settled: the flag's, else the data's
    slots: Optional[int]          # S, fixed for the run once settled
    workers: Optional[int]        # the worker count the slots are dealt to
    loop: engine.TrainConfig      # model_dir, batch, epochs, cadences; seed and steps once settled
    input: InputPlan
    net: NetPlan
    step: StepPlan
    machine: MachinePlan
    dumps: Optional[DumpPlan]
    evaluate_checkpoint_path: Optional[str]
    elastic_allowed: bool         # --elastic=auto (off: Horovod elastic jobs train plainly)
    flag_lines: Tuple[Tuple[str, str], ...]  # (name, --name=value) of every flag with a value

    # What the loop holds, by the names the rest of the run uses.
    model_dir = property(lambda self: self.loop.model_dir)
    batch_size = property(lambda self: self.loop.batch_size)
    epochs = property(lambda self: self.loop.epochs)
    seed = property(lambda self: self.loop.seed)
    steps_per_epoch = property(lambda self: self.loop.steps_per_epoch)

    @property
    def micro_batches(self) -> int:
        """Micro-batches each worker runs per step: the slots over the workers."""
        return self.slots // self.workers

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // self.slots

    @property
    def compute_dtype(self) -> str:
        if self.dtype not in COMPUTE_DTYPES:
            raise CommandError(f"--dtype={self.dtype} must be resolved (fp32 or bf16) to build "
                               f"a net")
        return COMPUTE_DTYPES[self.dtype]

    def net_options(self) -> dict:
        """nets.build(plan.net.model, **plan.net_options()): the run's net."""
        return dict(self.net.options, num_classes=self.num_classes, seed=self.seed or 0,
                    compute_dtype=self.compute_dtype)

    def deal_slots(self, workers: int, *, recorded: Optional[int] = None) -> int:
        """The slot count on `workers` workers (engine/slots.py's rule, refused in one line)."""
        return slot_rule.deal(batch_size=self.batch_size, workers=workers,
                              micro_batch_size=self.micro_batch_size_asked,
                              micro_batches=self.micro_batches_asked,
                              micro_batches_given=self.micro_batches_given,
                              recorded=recorded, allow_redeal=self.loop.allow_redeal)

    def for_workers(self, workers: int, *, recorded: Optional[int] = None) -> "RunPlan":
        """The plan on `workers` workers: the run's slots (`recorded`: a resumed run's) kept
        when `workers` divides them, else dealt anew (--allow_redeal) or refused."""
        slots = self.deal_slots(workers, recorded=recorded or self.slots)
        return dataclasses.replace(self, slots=slots, workers=workers)

    def settle(self, settlement: Settlement, *, workers: int, data=None) -> "RunPlan":
        """The plan with what the run decides at its start: the settlement's seed, dtype and
        slots on `workers` workers, and the steps per epoch and classes of `data` (an input
        module; not needed once the plan holds them, as on elastic training's re-entry)."""
        steps, classes = self.loop.steps_per_epoch, self.num_classes
        if steps is None:
            steps = data.num_examples("train") // self.batch_size
            if steps == 0:
                raise CommandError(f"--batch_size {self.batch_size} is larger than the "
                                   f"{data.num_examples('train')} training examples")
        settled = dataclasses.replace(
            self, dtype=settlement.dtype,
            num_classes=classes if classes is not None else data.num_classes,
            loop=dataclasses.replace(self.loop, seed=settlement.seed, steps_per_epoch=steps))
        return settled.for_workers(workers, recorded=settlement.recorded_slots)

    def flagfile(self) -> str:
        """flags.txt: every flag with a value, as --name=value lines, the settled values in
        place of those the command left open (the micro-batches per worker left out: a rerun
        on any worker count that divides the slots derives them)."""
        settled = {"seed": self.seed, "num_classes": self.num_classes,
                   "steps_per_epoch": self.steps_per_epoch, "dtype": self.dtype,
                   "micro_batch_size": self.micro_batch_size, "micro_batches": None,
                   "grad_accum_steps": None}
        lines = [line for name, line in self.flag_lines if name not in settled]
        lines += [f"--{name}={value}" for name, value in settled.items() if value is not None]
        return "\n".join(sorted(lines)) + "\n"


def from_flags(fv: flags.FlagValues) -> RunPlan:
    """What the command asks, as a plan to settle: the one reader of launch.train's flags."""
    options = inputs.InputOptions(
        private_threads=None, image_size=fv.image_size, preprocessing=fv.preprocessing,
        num_parallel_calls=fv.dataset_num_parallel_calls, deterministic=fv.deterministic,
        shuffle_buffer=fv.shuffle_buffer, skip_corrupt=fv.skip_corrupt,
        randaugment=augment.RandAugment.parse(fv.randaugment) if fv.randaugment else None,
        random_erasing=fv.random_erasing)
    pools = hardware.thread_pools(intra_op=fv.intra_op_threads, inter_op=fv.inter_op_threads,
                                  dataset_private=fv.dataset_private_threads)
    mixes = mixing.Mixing(mixup_alpha=fv.mixup_alpha, cutmix_alpha=fv.cutmix_alpha,
                          prob=fv.mix_prob)
    net_options = dict(dropout_rate=fv.dropout_rate, bn_epsilon=fv.bn_epsilon,
                       bn_momentum=fv.bn_momentum, kernel_initializer=fv.kernel_initializer,
                       data_format=fv.data_format, recompute=fv.recompute)
    if fv.model == "densenet":
        net_options.update(blocks=[int(b) for b in fv.blocks], growth_rate=fv.growth_rate,
                           stem_filters=fv.stem_filters)
    per_loop = train_flags.steps_per_loop(fv.steps_per_loop)
    return RunPlan(
        dtype_asked=fv.dtype, dtype=fv.dtype, micro_batch_size_asked=fv.micro_batch_size,
        micro_batches_asked=fv.micro_batches,
        micro_batches_given=fv["micro_batches"].present, num_classes=fv.num_classes,
        slots=None, workers=None,
        loop=engine.TrainConfig(
            model_dir=fv.model_dir, batch_size=fv.batch_size, epochs=fv.epochs,
            steps_per_epoch=fv.steps_per_epoch, validation_steps=fv.validation_steps,
            validation_freq=fv.validation_freq, seed=fv.seed, log_steps=fv.log_steps,
            save_summary_steps=fv.save_summary_steps, checkpoint_steps=fv.checkpoint_steps,
            keep_checkpoints=fv.keep_checkpoints,
            steps_per_loop=None if per_loop == "auto" else per_loop,
            stop_within=fv.stop_within,
            profile_steps=train_flags.parse_window(fv.profile_steps) if fv.profile_steps
            else None,
            resume_from_checkpoint_path=fv.resume_from_checkpoint_path,
            resume_from_epoch=(fv.resume_from_epoch if fv.resume_from_checkpoint_path
                               else None),
            allow_fresh_start=fv.allow_fresh_start,
            # A progress line rewrites itself with carriage returns: off a terminal (a log
            # file, a pipe) that makes one endless line, so there the plain lines are printed.
            progress=fv.progress is not False and sys.stdout.isatty(),
            precise_bn_batches=fv.precise_bn_batches, allow_redeal=fv.allow_redeal,
            keep_best=fv.keep_best, target_accuracy=fv.target_accuracy),
        input=InputPlan(name=fv.input, options=options,
                        mixing=mixes if mixes.enabled else None,
                        dataset_dir=None if fv.input == "synthetic" else fv.dataset_dir,
                        train_subset=fv.train_subset, val_subset=fv.val_subset,
                        num_classes=fv.num_classes),
        net=NetPlan(model=fv.model, options=tuple(sorted(net_options.items())),
                    init_checkpoint=fv.init_checkpoint, init_skip_head=fv.init_skip_head),
        step=StepPlan(optimizer=fv.optimizer, momentum=fv.momentum, lars_eta=fv.lars_eta,
                      lars_epsilon=fv.lars_epsilon, weight_decay=fv.weight_decay,
                      weight_decay_mode=fv.weight_decay_mode, lr_schedule=fv.lr_schedule,
                      initial_lr=fv.initial_lr, warmup_epochs=fv.warmup_epochs,
                      label_smoothing=fv.label_smoothing, ema_decay=fv.ema_decay,
                      jit_compile=fv.jit_compile, clip_grad_norm=fv.clip_grad_norm),
        machine=MachinePlan(pools=pools, run_on_hpu=fv.run_on_hpu,
                            use_hpu_strategy=fv.use_hpu_strategy,
                            fp16_allreduce=fv.fp16_allreduce,
                            horovod_timeline=fv.horovod_timeline,
                            deterministic=fv.deterministic, data_format=fv.data_format,
                            stall_timeout=fv.stall_timeout,
                            stall_timeout_long=max(fv.stall_timeout_long, fv.stall_timeout)),
        dumps=DumpPlan(root=fv.dump_tensors,
                       window=(train_flags.parse_window(fv.dump_steps) if fv.dump_steps
                               else (0, 2**62)),
                       mode=fv.dump_mode, buffer_size=fv.dump_buffer_size,
                       all_ranks=fv.dump_all_ranks) if fv.dump_tensors else None,
        evaluate_checkpoint_path=fv.evaluate_checkpoint_path,
        elastic_allowed=fv.elastic != "off",
        flag_lines=tuple((flag.name, flag.serialize()) for concern in train_flags.CONCERNS
                         for flag in fv.get_flags_for_module(concern.__name__)
                         if flag.value is not None))


def local_settlement(plan: RunPlan, *, bf16: hardware.Bf16Support, is_chief: bool,
                     log) -> Settlement:
    """The open values as this worker sees them, without a collective (elastic training): a
    drawn seed when none was given; --dtype=auto as bf16 where this device computes it
    natively, else fp32 (bf16 where it is emulated warns in one line, on the chief); the slots
    of the run's newest checkpoint, read on the chief (hosts without a shared file system hold
    the checkpoints on its host)."""
    seed = plan.seed
    if seed is None:
        seed = random.SystemRandom().randrange(1, train_flags.MAX_SEED + 1)
    dtype = plan.dtype_asked
    if dtype == "auto":
        dtype = "bf16" if bf16.native else "fp32"
    elif dtype == "bf16" and not bf16.native and is_chief:
        log(f"warning: --dtype=bf16 on {bf16.device}, which has {bf16.missing}: TensorFlow "
            f"emulates bf16 there (a convolution probe here ran "
            f"{hardware.bf16_slowdown():.1f}x fp32's time); --dtype=fp32, or --dtype=auto to "
            f"use bf16 only where native")
    recorded = (engine.recorded_slots(plan.model_dir, plan.loop.resume_from_checkpoint_path)
                if is_chief else None)
    return Settlement(seed=seed, dtype=dtype, recorded_slots=recorded)


def agreed_settlement(mine: Settlement, *, backend) -> Settlement:
    """Rank 0's settlement on every worker, in one broadcast."""
    import tensorflow as tf
    shared = tf.Variable([mine.seed, int(mine.dtype == "bf16"), mine.recorded_slots or 0],
                         dtype=tf.int64)
    backend.broadcast_variables([shared])
    seed, bf16, recorded = (int(v) for v in shared.numpy())
    return Settlement(seed=seed, dtype="bf16" if bf16 else "fp32",
                      recorded_slots=recorded or None)
