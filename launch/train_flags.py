"""Flags of `python -m launch.train`: the vendor recipe's, by name, type and default, then ours,
grouped by concern (see --helpfull). Validators end a bad command line with one line naming the
flag, exit code 1, before any TensorFlow graph is built."""
import os

from absl import flags

import nets
from engine import distributed, losses, optimizers, schedules

FLAGS = flags.FLAGS
MODELS = tuple(nets.MODEL_NAMES) + ("densenet",)

# -- The vendor recipe's command line (same names, types and defaults) --------------------------
flags.DEFINE_string("dataset_dir", "/data/imagenet/tf_records", "Path to dataset.")
flags.DEFINE_string("model_dir", "./", "Directory for checkpoints, logs, flags.txt, metrics.")
flags.DEFINE_enum("dtype", "bf16", ["fp32", "bf16"], "Training precision (compute dtype; "
                  "variables, BN statistics, loss and gradients stay fp32).")
flags.DEFINE_float("dropout_rate", 0.0, "Dropout rate after each conv in blocks and transitions.")
flags.DEFINE_enum("optimizer", "sgd", list(optimizers.NAMES),
                  "sgd: momentum 0.9 Nesterov; adam/rmsprop: epsilon 1e-2 as the recipe.")
flags.DEFINE_integer("batch_size", 256, "Global batch size; each worker takes batch_size / "
                     "workers.")
flags.DEFINE_float("initial_lr", 0.1, "Initial learning rate (used as given, no rescaling).")
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay (see --weight_decay_mode).")
flags.DEFINE_integer("epochs", 90, "Total number of epochs.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: training examples // "
                     "batch_size).")
flags.DEFINE_integer("validation_steps", None, "Validation batches per worker; default: the whole "
                     "validation split exactly once; 0 disables validation.")
flags.DEFINE_enum("model", "densenet121", list(MODELS), "Model; `densenet` is a custom one "
                  "from --blocks, --growth_rate and --stem_filters.")
flags.DEFINE_string("train_subset", "train", "Training subset folder in dataset_dir.")
flags.DEFINE_string("val_subset", "validation", "Validation subset folder in dataset_dir.")
flags.DEFINE_string("resume_from_checkpoint_path", None, "Checkpoint to resume from (used when "
                    "model_dir holds none; a run in a model_dir with checkpoints resumes from "
                    "its latest).")
flags.DEFINE_integer("resume_from_epoch", 0, "Epoch of --resume_from_checkpoint_path, for "
                     "checkpoints that do not record it.")
flags.DEFINE_string("evaluate_checkpoint_path", None, "Only evaluate this checkpoint on "
                    "--val_subset.")
flags.DEFINE_integer("seed", None, "Random seed (default: drawn, and written to flags.txt).")
flags.DEFINE_integer("warmup_epochs", 5, "Epochs of linear learning-rate warm-up.")
flags.DEFINE_integer("save_summary_steps", None, "Steps between TensorBoard summaries; None: "
                     "none (evaluation summaries are always written).")
flags.DEFINE_boolean("run_on_hpu", False, "Run on Gaudi: load the Habana module.")
flags.DEFINE_boolean("use_hpu_strategy", False, "Data-parallel over several HPUs: here that is "
                     "Horovod over HCCL (launch with mpirun or horovodrun), replacing the "
                     "recipe's HPUStrategy.")
flags.DEFINE_integer("dataset_num_parallel_calls", -1, "Threads decoding images; -1: AUTOTUNE.")

# -- Ours: input -----------------------------------------------------------------------------
flags.DEFINE_enum("input", "imagenet", ["imagenet", "folder", "synthetic"], "Input module.")
flags.DEFINE_integer("image_size", 224, "Training and evaluation image size.")
flags.DEFINE_integer("num_classes", None, "Classes (default: from the input).")
flags.DEFINE_enum("preprocessing", "seed", ["seed", "inception"], "Preprocessing recipe.")
flags.DEFINE_boolean("deterministic", False, "Reproducible input order and deterministic ops "
                     "(with --seed, a rerun gives the same metrics).")
flags.DEFINE_boolean("skip_corrupt", False, "Leave undecodable or mislabelled examples out "
                     "(found by one scan, counted in the log) instead of stopping.")
flags.DEFINE_integer("shuffle_buffer", 8192, "Examples in the training shuffle buffer.")

# -- Ours: model -----------------------------------------------------------------------------
flags.DEFINE_float("bn_epsilon", 1.1e-5, "Batch-norm epsilon (the recipe's 1.1e-5; Keras "
                   "1.001e-5).")
flags.DEFINE_enum("kernel_initializer", "glorot_uniform", ["glorot_uniform", "he_normal"],
                  "Conv and dense kernel initializer (the recipe's Glorot, or the paper's He).")
flags.DEFINE_list("blocks", None, "--model=densenet: dense layers per block, e.g. 6,12,24,16.")
flags.DEFINE_integer("growth_rate", 32, "--model=densenet: channels each dense layer adds.")
flags.DEFINE_integer("stem_filters", 64, "--model=densenet: channels of the stem convolution.")
flags.DEFINE_boolean("recompute", False, "Memory-efficient dense blocks (57% of the peak "
                     "memory for 7% more time, measured on a CPU).")
flags.DEFINE_enum("data_format", "NHWC", ["NHWC", "NCHW"], "Layout inside the net (NCHW for "
                  "GPUs).")
flags.DEFINE_string("init_checkpoint", None, "Initial weights: a checkpoint of ours or a Keras "
                    ".h5 file (fine-tuning).")
flags.DEFINE_boolean("init_skip_head", False, "With --init_checkpoint: leave the classifier out.")

# -- Ours: optimization ----------------------------------------------------------------------
flags.DEFINE_enum("lr_schedule", "step", list(schedules.NAMES), "step: the recipe's (x0.1 at "
                  "epochs 30, 60, 80); cosine.")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
flags.DEFINE_enum("weight_decay_mode", "all", list(losses.WEIGHT_DECAY_MODES),
                  "all: L2 on every kernel, bias and BN parameter (the recipe); kernels: "
                  "kernels only; decoupled: AdamW/SGDW-style shrinkage.")
flags.DEFINE_boolean("fp16_allreduce", False, "Compress gradients to fp16 for the all-reduce.")

# -- Ours: loop, checkpoints, observability --------------------------------------------------
flags.DEFINE_integer("log_steps", 100, "Steps between training logs and metrics.jsonl records.")
flags.DEFINE_integer("checkpoint_steps", None, "Also checkpoint every N steps (epoch ends "
                     "always).")
flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept.")
flags.DEFINE_boolean("allow_fresh_start", False, "Start from scratch when model_dir holds "
                     "checkpoints but none loads.")
flags.DEFINE_integer("steps_per_loop", 1, "Steps inside one tf.function call.")
flags.DEFINE_boolean("jit_compile", False, "XLA-compile the train step (slower on CPU).")
flags.DEFINE_string("profile_steps", None, "START,END: capture steps START+1..END with the TF "
                    "profiler (TensorBoard's Profile tab).")
flags.DEFINE_string("horovod_timeline", None, "Write the Horovod timeline to this file.")
flags.DEFINE_boolean("progress", None, "A live progress line (default: when stdout is a "
                     "terminal or under make demo).")

# -- Validation ------------------------------------------------------------------------------
for _name in ("batch_size", "epochs", "image_size", "log_steps", "keep_checkpoints",
              "steps_per_loop", "shuffle_buffer"):
    flags.register_validator(_name, lambda v: v is not None and v > 0,
                             message=f"--{_name} must be a positive integer")
for _name in ("steps_per_epoch", "checkpoint_steps", "save_summary_steps", "num_classes"):
    flags.register_validator(_name, lambda v: v is None or v > 0,
                             message=f"--{_name} must be a positive integer when given")
flags.register_validator("validation_steps", lambda v: v is None or v >= 0,
                         message="--validation_steps must be 0 (off) or positive")
flags.register_validator("warmup_epochs", lambda v: v >= 0,
                         message="--warmup_epochs must not be negative")
flags.register_validator("resume_from_epoch", lambda v: v >= 0,
                         message="--resume_from_epoch must not be negative")
flags.register_validator("dataset_num_parallel_calls", lambda v: v == -1 or v > 0,
                         message="--dataset_num_parallel_calls must be -1 (AUTOTUNE) or positive")
flags.register_validator("initial_lr", lambda v: v > 0, message="--initial_lr must be positive")
flags.register_validator("weight_decay", lambda v: v >= 0,
                         message="--weight_decay must not be negative")
flags.register_validator("label_smoothing", lambda v: 0 <= v < 1,
                         message="--label_smoothing must be in [0, 1)")
flags.register_validator("dropout_rate", lambda v: 0 <= v < 1,
                         message="--dropout_rate must be in [0, 1)")
flags.register_validator("image_size", lambda v: v >= 32,
                         message="--image_size must be at least 32 (five 2x downsamplings)")


def _parse_window(text):
    start, end = (int(x) for x in text.split(","))
    return start, end


def _window_ok(text):
    if text is None:
        return True
    try:
        start, end = _parse_window(text)
    except ValueError:
        return False
    return 0 <= start < end


flags.register_validator("profile_steps", _window_ok,
                         message="--profile_steps must be START,END with 0 <= START < END")


@flags.multi_flags_validator(["model", "blocks"],
                             message="--model=densenet needs --blocks (positive integers, e.g. "
                                     "6,12,24,16); other models take none")
def _custom_model_blocks(values):
    if values["model"] != "densenet":
        return values["blocks"] is None
    try:
        return bool(values["blocks"]) and all(int(b) > 0 for b in values["blocks"])
    except ValueError:
        return False


@flags.multi_flags_validator(["batch_size"],
                             message="--batch_size must be divisible by the number of workers")
def _divisible_by_workers(values):
    return values["batch_size"] % launcher_world_size() == 0


@flags.multi_flags_validator(["resume_from_epoch", "resume_from_checkpoint_path"],
                             message="--resume_from_epoch needs --resume_from_checkpoint_path")
def _resume_epoch_needs_checkpoint(values):
    return not values["resume_from_epoch"] or values["resume_from_checkpoint_path"] is not None


@flags.multi_flags_validator(["input", "dataset_dir"])
def _dataset_dir_exists(values):
    if values["input"] != "synthetic" and not os.path.isdir(values["dataset_dir"]):
        raise flags.ValidationError(f"--dataset_dir {values['dataset_dir']} does not exist")
    return True


def _checkpoint_validator(name, allow_file=False):
    def check(values):
        path = values[name]
        if path is None or os.path.exists(path + ".index") or (allow_file and
                                                               os.path.isfile(path)):
            return True
        raise flags.ValidationError(f"--{name} {path}: no such checkpoint (expected "
                                    f"{path}.index{' or a .h5 file' if allow_file else ''})")
    flags.register_multi_flags_validator([name], check)


_checkpoint_validator("resume_from_checkpoint_path")
_checkpoint_validator("evaluate_checkpoint_path")
_checkpoint_validator("init_checkpoint", allow_file=True)


def launcher_world_size():
    """Workers as the launcher announced them (before Horovod starts)."""
    for variable in distributed._LAUNCHER_SIZE_VARIABLES:
        if os.environ.get(variable):
            return max(1, int(os.environ[variable]))
    return 1


def profile_window():
    return _parse_window(FLAGS.profile_steps) if FLAGS.profile_steps else None


def write_flagfile(path, module_name):
    """Every flag of `module_name` (this file) as --name=value lines: a reusable --flagfile."""
    lines = []
    for flag in sorted(FLAGS.get_flags_for_module(module_name), key=lambda f: f.name):
        if flag.value is None:
            continue
        lines.append(flag.serialize())
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
