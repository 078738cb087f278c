"""Flags of `python -m launch.train`: the vendor recipe's, by name, type and default, then ours,
one module per concern (recipe, input, augmentation, model, optimization, loop, machine), which
is how --helpfull groups them. Validators end a bad command line with one line naming the flag,
exit code 1, before any TensorFlow graph is built.

launch/plan.py reads them into the run's plan. Importing this module defines nothing;
`define(flags.FLAGS)` does (launch.train).
"""
import os

from absl import flags

from engine import distributed
from engine import slots as slot_rule
from input import augment
from input.options import InputOptions
from launch.train_flags import augmentation, loop, machine, model, optimization, recipe
from launch.train_flags import input as input_flags

FLAGS = flags.FLAGS
# The largest --seed: TensorFlow reduces seeds modulo 2**31 - 1, so larger ones alias smaller.
MAX_SEED = 2**31 - 2
CONCERNS = (recipe, input_flags, augmentation, model, optimization, loop, machine)


def define(fv: flags.FlagValues, *, validate: bool = True):
    """Defines every flag of launch.train in `fv`; with `validate`, their validators too."""
    for concern in CONCERNS:
        concern.define(fv)
    if validate:
        _register_validators(fv)


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
    """--profile_steps / --dump_steps START,END as (START, END)."""
    start, end = (int(x) for x in text.split(","))
    return start, end


def _register_validators(fv):
    def positive(name):
        flags.register_validator(name, lambda v: v is not None and v > 0,
                                 message=f"--{name} must be a positive integer", flag_values=fv)

    def positive_or_none(name):
        flags.register_validator(name, lambda v: v is None or v > 0,
                                 message=f"--{name} must be a positive integer when given",
                                 flag_values=fv)

    def check(name, predicate, message):
        flags.register_validator(name, predicate, message=message, flag_values=fv)

    for name in ("batch_size", "epochs", "log_steps", "keep_checkpoints", "micro_batches",
                 "stall_timeout_long", "stop_within", "validation_freq"):
        positive(name)
    for name in ("steps_per_epoch", "checkpoint_steps", "save_summary_steps", "num_classes",
                 "micro_batch_size", "intra_op_threads", "inter_op_threads",
                 "dataset_private_threads"):
        positive_or_none(name)
    check("steps_per_loop", lambda v: steps_per_loop(v) is not None,
          "--steps_per_loop must be auto or a positive integer")
    check("validation_steps", lambda v: v is None or v >= 0,
          "--validation_steps must be 0 (off) or positive")
    check("warmup_epochs", lambda v: v >= 0, "--warmup_epochs must not be negative")
    check("resume_from_epoch", lambda v: v >= 0, "--resume_from_epoch must not be negative")
    check("initial_lr", lambda v: v > 0, "--initial_lr must be positive")
    check("ema_decay", lambda v: v is None or 0 < v < 1, "--ema_decay must be in (0, 1)")
    check("bn_momentum", lambda v: 0 <= v < 1, "--bn_momentum must be in [0, 1)")
    check("precise_bn_batches", lambda v: v >= 0, "--precise_bn_batches must not be negative")
    check("stall_timeout", lambda v: v >= 0, "--stall_timeout must be 0 (off) or positive")
    check("weight_decay", lambda v: v >= 0, "--weight_decay must not be negative")
    check("momentum", lambda v: 0 <= v < 1, "--momentum must be in [0, 1)")
    check("lars_eta", lambda v: v > 0, "--lars_eta must be positive")
    check("lars_epsilon", lambda v: v >= 0, "--lars_epsilon must not be negative")
    check("clip_grad_norm", lambda v: v is None or v > 0,
          "--clip_grad_norm must be positive when given")
    check("seed", lambda v: v is None or 0 <= v <= MAX_SEED,
          f"--seed must be in [0, {MAX_SEED}]")
    check("target_accuracy", lambda v: v is None or 0 < v <= 1,
          "--target_accuracy must be in (0, 1]")
    check("label_smoothing", lambda v: 0 <= v < 1, "--label_smoothing must be in [0, 1)")
    check("dropout_rate", lambda v: 0 <= v < 1, "--dropout_rate must be in [0, 1)")
    # The input's own checks (input.options), under the flags' names.
    for flag_name, field in (("image_size", "image_size"), ("shuffle_buffer", "shuffle_buffer"),
                             ("random_erasing", "random_erasing"),
                             ("dataset_num_parallel_calls", "num_parallel_calls")):
        check(flag_name, _input_check(flag_name, field), "")
    check("image_size", lambda v: v >= 32,
          "--image_size must be at least 32 (five 2x downsamplings)")
    check("randaugment", _randaugment_ok, "--randaugment must be M,N[,S]")
    check("mix_prob", lambda v: 0 <= v <= 1, "--mix_prob must be in [0, 1]")
    for name in ("mixup_alpha", "cutmix_alpha"):
        check(name, lambda v: v >= 0, f"--{name} must not be negative (0: off)")
    check("profile_steps", _window_ok,
          "--profile_steps must be START,END with 0 <= START < END")
    check("dump_steps", _window_ok, "--dump_steps must be START,END with 0 <= START < END")

    def multi(names, predicate, message=None):
        flags.register_multi_flags_validator(names, predicate, message=message or "",
                                             flag_values=fv)

    multi(["model", "blocks"], _custom_model_blocks,
          "--model=densenet needs --blocks (positive integers, e.g. 6,12,24,16); other models "
          "take none")
    multi(["batch_size"],
          lambda v: v["batch_size"] % distributed.launcher_world_size() == 0,
          "--batch_size must be divisible by the number of workers")
    multi(["batch_size", "micro_batches", "micro_batch_size"], _slots_deal)
    multi(["batch_size", "micro_batch_size"],
          lambda v: not v["micro_batch_size"] or v["batch_size"] % v["micro_batch_size"] == 0,
          "--batch_size must be a multiple of --micro_batch_size")
    multi(["optimizer", "weight_decay_mode"],
          lambda v: v["optimizer"] != "lars" or v["weight_decay_mode"] == "all",
          "--weight_decay_mode does not apply to --optimizer=lars: its weight decay is part of "
          "the update, and leaves batch norm parameters and biases out")
    multi(["keep_best", "ema_decay"],
          lambda v: not (v["keep_best"] or "").endswith("_ema") or v["ema_decay"],
          "--keep_best=*_ema needs --ema_decay (the weight average it scores)")
    multi(["keep_best", "target_accuracy", "validation_steps"],
          lambda v: v["validation_steps"] != 0 or not (v["keep_best"] or v["target_accuracy"]),
          "--keep_best and --target_accuracy need evaluations: --validation_steps=0 turns "
          "them off")
    multi(["resume_from_epoch", "resume_from_checkpoint_path"],
          lambda v: not v["resume_from_epoch"] or v["resume_from_checkpoint_path"] is not None,
          "--resume_from_epoch needs --resume_from_checkpoint_path")
    multi(["input", "dataset_dir"], _dataset_dir_exists)
    multi(["input", "randaugment", "random_erasing"],
          lambda v: v["input"] != "synthetic" or not (v["randaugment"] or v["random_erasing"]),
          "--randaugment and --random_erasing augment decoded images; --input=synthetic has "
          "none")
    multi(["dump_tensors", "dump_steps", "dump_all_ranks"],
          lambda v: v["dump_tensors"] or not (v["dump_steps"] or v["dump_all_ranks"]),
          "--dump_steps and --dump_all_ranks need --dump_tensors=DIR")
    multi(["dump_tensors", "jit_compile"],
          lambda v: not (v["dump_tensors"] and v["jit_compile"]),
          "--dump_tensors cannot be --jit_compile: XLA fuses the ops whose outputs it dumps")
    multi(["jit_compile", "deterministic"],
          lambda v: not (v["jit_compile"] and v["deterministic"]),
          "--jit_compile cannot be --deterministic: XLA has no deterministic max-pool gradient")
    for name, allow_file in (("resume_from_checkpoint_path", False),
                             ("evaluate_checkpoint_path", False), ("init_checkpoint", True)):
        multi([name], _checkpoint_exists(name, allow_file))


def _slots_deal(values):
    """A run's slots from --micro_batches on the launcher's worker count (engine/slots.py's
    rule); the start deals them again with what the checkpoints recorded."""
    if values["micro_batch_size"]:
        return True  # its slots may be a resumed run's: the start checks them (one line)
    try:
        slot_rule.deal(batch_size=values["batch_size"],
                       workers=distributed.launcher_world_size(),
                       micro_batch_size=values["micro_batch_size"],
                       micro_batches=values["micro_batches"])
    except slot_rule.SlotError as e:
        raise flags.ValidationError(str(e)) from None
    return True


def _input_check(flag_name, field):
    def check(value):
        problem = InputOptions.check(field, value)
        if problem:
            raise flags.ValidationError(f"--{flag_name} {problem}")
        return True
    return check


def _randaugment_ok(text):
    if text is None:
        return True
    try:
        augment.RandAugment.parse(text)
    except ValueError as e:
        raise flags.ValidationError(f"--randaugment: {e}") from None
    return True


def _window_ok(text):
    if text is None:
        return True
    try:
        start, end = parse_window(text)
    except ValueError:
        return False
    return 0 <= start < end


def _custom_model_blocks(values):
    if values["model"] != "densenet":
        return values["blocks"] is None
    try:
        return bool(values["blocks"]) and all(int(b) > 0 for b in values["blocks"])
    except ValueError:
        return False


def _dataset_dir_exists(values):
    if values["input"] != "synthetic" and not os.path.isdir(values["dataset_dir"]):
        raise flags.ValidationError(f"--dataset_dir {values['dataset_dir']} does not exist")
    return True


def _checkpoint_exists(name, allow_file):
    def check(values):
        path = values[name]
        if path is None or os.path.exists(path + ".index") or (allow_file and
                                                               os.path.isfile(path)):
            return True
        raise flags.ValidationError(f"--{name} {path}: no such checkpoint (expected "
                                    f"{path}.index{' or a .h5 file' if allow_file else ''})")
    return check

