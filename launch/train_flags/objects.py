"""The one mapping from flag values to the run's objects: the input module, the net, the train
step, the loop's configuration, the watchdog and the tensor dumps. Every function takes the
flag values (`fv`) and what the run settled at its start (`Resolved`); none reads or changes
absl's global FLAGS."""
import dataclasses
import os
import sys
from typing import Optional

from absl import flags

import engine
import input as inputs
import nets
from engine import ema, optimizers, schedules, watchdog
from input import augment, mixing
from launch.errors import CommandError

COMPUTE_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}  # --dtype -> nets' compute_dtype


@dataclasses.dataclass(frozen=True)
class Resolved:
    """What the run settled that its flags may leave open: written into flags.txt, so that
    --flagfile=<model_dir>/flags.txt reproduces the run."""
    seed: int
    num_classes: int
    steps_per_epoch: int
    dtype: str  # --dtype=auto resolved: fp32 or bf16
    micro_batch_size: int  # batch_size / the run's slots
    # Derived from the slots and the worker count, so flags.txt leaves it out (None) and reruns
    # on any count that divides the slots.
    grad_accum_steps: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class SlotPlan:
    """The run's micro-batch slots and what this worker count makes of them."""
    slots: int            # S: the global batch in micro-batches, fixed for the run
    micro_batches: int    # per worker and step: S / workers


def slot_plan(fv: flags.FlagValues, *, workers: int, recorded: Optional[int]) -> SlotPlan:
    """The slots of this run: --micro_batch_size's, else the slots its checkpoints recorded
    (`recorded`), else workers x --grad_accum_steps; refused in one line when `workers` does
    not divide them (unless --allow_redeal) or the flags contradict them."""
    given = fv.batch_size // fv.micro_batch_size if fv.micro_batch_size else None
    slots = given or recorded or workers * fv.grad_accum_steps
    if recorded and slots != recorded and not fv.allow_redeal:
        raise CommandError(
            f"--micro_batch_size={fv.micro_batch_size} makes {slots} micro-batch slots, but the "
            f"run being resumed has {recorded} (micro-batch {fv.batch_size // recorded}): drop "
            f"the flag to continue it, or use another --model_dir")
    if slots % workers or fv.batch_size % slots:
        if not fv.allow_redeal or given:
            counts = [d for d in range(1, slots + 1) if slots % d == 0]
            raise CommandError(
                f"{workers} workers do not divide this run's {slots} micro-batch slots "
                f"(--batch_size={fv.batch_size} in micro-batches of "
                f"{fv.batch_size // slots}): run it on a worker count that divides {slots} "
                f"({', '.join(map(str, counts))})"
                + ("" if given else ", or pass --allow_redeal to deal new slots"))
        slots = workers * fv.grad_accum_steps
    micro_batches = slots // workers
    if given and fv["grad_accum_steps"].present and fv.grad_accum_steps != micro_batches:
        raise CommandError(
            f"--grad_accum_steps={fv.grad_accum_steps} contradicts --micro_batch_size="
            f"{fv.micro_batch_size}: {slots} slots on {workers} workers are {micro_batches} "
            f"micro-batches each; drop --grad_accum_steps")
    return SlotPlan(slots=slots, micro_batches=micro_batches)


def input_options(fv: flags.FlagValues, *,
                  private_threads: Optional[int] = None) -> inputs.InputOptions:
    """The input's options; `private_threads`: its own tf.data pool (None: the shared one)."""
    return inputs.InputOptions(private_threads=private_threads,
        image_size=fv.image_size, preprocessing=fv.preprocessing,
        num_parallel_calls=fv.dataset_num_parallel_calls, deterministic=fv.deterministic,
        shuffle_buffer=fv.shuffle_buffer, skip_corrupt=fv.skip_corrupt,
        randaugment=augment.RandAugment.parse(fv.randaugment) if fv.randaugment else None,
        random_erasing=fv.random_erasing)


def batch_mixing(fv: flags.FlagValues) -> Optional[mixing.Mixing]:
    mixes = mixing.Mixing(mixup_alpha=fv.mixup_alpha, cutmix_alpha=fv.cutmix_alpha,
                          prob=fv.mix_prob)
    return mixes if mixes.enabled else None


def input_module(fv: flags.FlagValues, *, private_threads: Optional[int] = None):
    """The input module these flags describe."""
    options = input_options(fv, private_threads=private_threads)
    if fv.input == "synthetic":
        return inputs.build("synthetic", options=options,
                            num_classes=fv.num_classes or 1000, mixing=batch_mixing(fv))
    return inputs.build(fv.input, options=options, dataset_dir=fv.dataset_dir,
                        train_subset=fv.train_subset, val_subset=fv.val_subset,
                        num_classes=fv.num_classes, mixing=batch_mixing(fv))


def resolve(fv: flags.FlagValues, *, seed: int, data, dtype: str, slots: int) -> Resolved:
    steps = fv.steps_per_epoch
    if steps is None:
        steps = data.num_examples("train") // fv.batch_size
        if steps == 0:
            raise CommandError(f"--batch_size {fv.batch_size} is larger than the "
                               f"{data.num_examples('train')} training examples")
    return Resolved(seed=seed, num_classes=fv.num_classes or data.num_classes,
                    steps_per_epoch=steps, dtype=dtype, micro_batch_size=fv.batch_size // slots)


def net_options(fv: flags.FlagValues, *, seed: int = 0, num_classes: int = None,
                dtype: str = None) -> dict:
    """nets.build(fv.model, **net_options(fv)): the net that these flags describe; `dtype`:
    the resolved --dtype (needed when it is auto)."""
    dtype = dtype or fv.dtype
    if dtype not in COMPUTE_DTYPES:
        raise CommandError(f"--dtype={dtype} must be resolved (fp32 or bf16) to build a net")
    options = dict(num_classes=num_classes or fv.num_classes, dropout_rate=fv.dropout_rate,
                   bn_epsilon=fv.bn_epsilon, bn_momentum=fv.bn_momentum,
                   kernel_initializer=fv.kernel_initializer,
                   compute_dtype=COMPUTE_DTYPES[dtype], data_format=fv.data_format,
                   recompute=fv.recompute, seed=seed)
    if fv.model == "densenet":
        options.update(blocks=[int(b) for b in fv.blocks], growth_rate=fv.growth_rate,
                       stem_filters=fv.stem_filters)
    return options


def net(fv: flags.FlagValues, resolved: Resolved):
    """The net, initialized from --init_checkpoint when given."""
    model = nets.build(fv.model, **net_options(fv, seed=resolved.seed,
                                               num_classes=resolved.num_classes,
                                               dtype=resolved.dtype))
    path = fv.init_checkpoint
    if path and path.endswith(".h5"):
        nets.load_keras_weights(model, path, skip_head=fv.init_skip_head)
    elif path:
        try:
            engine.restore_net(model, path, skip_head=fv.init_skip_head)
        except engine.HeadMismatch as e:
            raise CommandError(f"--init_checkpoint: {e}; add --init_skip_head to fine-tune "
                               f"with a new classifier") from None
    return model


def train_step(fv: flags.FlagValues, *, model, backend, resolved: Resolved,
               micro_batches: int):
    """The train step, which owns the net, the optimizer and the weight average."""
    lr_fn = schedules.build(fv.lr_schedule, initial_lr=fv.initial_lr,
                            steps_per_epoch=resolved.steps_per_epoch,
                            warmup_epochs=fv.warmup_epochs, total_epochs=fv.epochs)
    # LARS decays inside its update; the others by an L2 penalty in the loss or decoupled.
    loss_weight_decay = 0.0 if fv.optimizer == "lars" else fv.weight_decay
    return engine.TrainStep(
        net=model, optimizer=optimizer(fv, model), backend=backend, lr_fn=lr_fn,
        weight_decay=loss_weight_decay, weight_decay_mode=fv.weight_decay_mode,
        label_smoothing=fv.label_smoothing, grad_accum_steps=micro_batches,
        ema=ema.WeightEma(model, fv.ema_decay) if fv.ema_decay else None,
        jit_compile=fv.jit_compile, seed=resolved.seed, clip_grad_norm=fv.clip_grad_norm)


def optimizer(fv: flags.FlagValues, model):
    if fv.optimizer == "lars":
        roles = model.variables_by_role()
        return optimizers.build("lars", momentum=fv.momentum, eta=fv.lars_eta,
                                epsilon=fv.lars_epsilon, weight_decay=fv.weight_decay,
                                excluded=roles["normalization"] + roles["biases"])
    decoupled = fv.weight_decay if fv.weight_decay_mode == "decoupled" else 0.0
    options = {"momentum": fv.momentum} if fv.optimizer == "sgd" else {}
    return optimizers.build(fv.optimizer, decoupled_weight_decay=decoupled, **options)


def train_config(fv: flags.FlagValues, resolved: Resolved) -> engine.TrainConfig:
    per_loop = steps_per_loop(fv.steps_per_loop)
    # A progress line rewrites itself with carriage returns: off a terminal (a log file, a
    # pipe) that makes one endless line, so there the plain per-interval lines are printed.
    return engine.TrainConfig(
        model_dir=fv.model_dir, batch_size=fv.batch_size, epochs=fv.epochs,
        steps_per_epoch=resolved.steps_per_epoch, validation_steps=fv.validation_steps,
        validation_freq=fv.validation_freq, seed=resolved.seed, log_steps=fv.log_steps,
        save_summary_steps=fv.save_summary_steps,
        checkpoint_steps=fv.checkpoint_steps, keep_checkpoints=fv.keep_checkpoints,
        steps_per_loop=None if per_loop == "auto" else per_loop, stop_within=fv.stop_within,
        profile_steps=profile_window(fv),
        resume_from_checkpoint_path=fv.resume_from_checkpoint_path,
        resume_from_epoch=fv.resume_from_epoch if fv.resume_from_checkpoint_path else None,
        allow_fresh_start=fv.allow_fresh_start,
        progress=fv.progress is not False and sys.stdout.isatty(),
        precise_bn_batches=fv.precise_bn_batches, allow_redeal=fv.allow_redeal,
        keep_best=fv.keep_best, target_accuracy=fv.target_accuracy)


def stall_watchdog(fv: flags.FlagValues, rank: int):
    if not fv.stall_timeout:
        return None
    return watchdog.Watchdog(timeout=fv.stall_timeout,
                             long_timeout=max(fv.stall_timeout_long, fv.stall_timeout),
                             rank=rank)


def profile_window(fv: flags.FlagValues):
    return parse_window(fv.profile_steps) if fv.profile_steps else None


def tensor_dumps(fv: flags.FlagValues, rank: int):
    """The --dump_tensors window of this worker (engine.tensor_dumps.TensorDumps: every worker
    has it, rank 0 alone writes unless --dump_all_ranks), or None."""
    if not fv.dump_tensors:
        return None
    from engine.tensor_dumps import TensorDumps
    root = (os.path.join(fv.dump_tensors, f"rank_{rank}") if fv.dump_all_ranks
            else fv.dump_tensors)
    window = parse_window(fv.dump_steps) if fv.dump_steps else (0, 2**62)
    return TensorDumps(root, window=window, mode=fv.dump_mode, buffer_size=fv.dump_buffer_size,
                       writes=rank == 0 or fv.dump_all_ranks)


def steps_per_loop(text):
    """--steps_per_loop as "auto" or a positive int; None when it is neither."""
    if text == "auto":
        return "auto"
    try:
        value = int(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def parse_window(text):
    start, end = (int(x) for x in text.split(","))
    return start, end
