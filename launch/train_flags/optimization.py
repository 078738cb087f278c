"""Flags of the optimization beyond the recipe's: schedule, momentum and LARS, gradient clipping,
label smoothing, weight decay's form, micro-batch slots and accumulation, weight average,
gradient compression."""
from absl import flags

from engine import losses, schedules


def define(fv: flags.FlagValues):
    flags.DEFINE_enum("lr_schedule", "step", list(schedules.NAMES), "step: the recipe's (x0.1 "
                      "at epochs 30, 60, 80); cosine; poly: (1 - progress)^2 to 1e-4 after the "
                      "warm-up, as MLPerf's LARS runs.", flag_values=fv)
    flags.DEFINE_float("momentum", 0.9, "Momentum of --optimizer=sgd and lars.", flag_values=fv)
    flags.DEFINE_float("lars_eta", 0.001, "--optimizer=lars: the trust coefficient eta of "
                       "eta * ||w|| / (||g|| + weight_decay * ||w|| + epsilon).", flag_values=fv)
    flags.DEFINE_float("lars_epsilon", 0.0, "--optimizer=lars: epsilon of the trust ratio.",
                       flag_values=fv)
    flags.DEFINE_float("clip_grad_norm", None, "Scale the all-reduced gradients down to this "
                       "global norm when it is larger (the same on every worker), before the "
                       "update. The training records carry grad_norm (before clipping) either "
                       "way.", flag_values=fv)
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.", flag_values=fv)
    flags.DEFINE_enum("weight_decay_mode", "all", list(losses.WEIGHT_DECAY_MODES),
                      "all: L2 on every kernel, bias and BN parameter (the recipe); kernels: "
                      "kernels only; decoupled: AdamW/SGDW-style shrinkage.", flag_values=fv)
    flags.DEFINE_integer("micro_batches", 1, "Micro-batches each worker runs per optimizer "
                         "step (gradient accumulation) when --micro_batch_size is not given: "
                         "the run then has workers x N micro-batch slots of batch_size / "
                         "(workers x N) examples; their gradients are summed and all-reduced "
                         "once; --batch_size stays the global batch of one step, so the LR "
                         "schedule and steps per epoch do not change. Batch norm normalizes "
                         "each micro-batch on its own statistics.", flag_values=fv)
    # The flag's name before it was named for what it counts (recipes and flags.txt files).
    flags.DEFINE_alias("grad_accum_steps", "micro_batches", flag_values=fv)
    flags.DEFINE_integer("micro_batch_size", None, "Examples per micro-batch slot: the run's "
                         "global batch is S = batch_size / M slots, each with its own input "
                         "stream, augmentation, mixing and dropout draws, so any worker count "
                         "that divides S trains the same run (each worker runs S / workers "
                         "slots, --micro_batches derived). Default: the slots of the run's "
                         "checkpoints, else workers x --micro_batches.", flag_values=fv)
    flags.DEFINE_boolean("allow_redeal", False, "Resume on a worker count that does not divide "
                         "the run's slots: new slots (workers x --micro_batches), and the "
                         "rest of the interrupted pass over the training data dealt anew.",
                         flag_values=fv)
    flags.DEFINE_float("ema_decay", None, "Keep an exponential moving average of the weights "
                       "and BN statistics with this decay (e.g. 0.9998), warmed up as "
                       "min(D, (1 + t) / (10 + t)); evaluation reports it as validation_ema; "
                       "launch.export --ema exports it.", flag_values=fv)
    flags.DEFINE_boolean("fp16_allreduce", False, "Compress gradients to fp16 for the "
                         "all-reduce.", flag_values=fv)
