"""Flags of the optimization beyond the recipe's: schedule, label smoothing, weight decay's form,
gradient compression."""
from absl import flags

from engine import losses, schedules


def define(fv: flags.FlagValues):
    flags.DEFINE_enum("lr_schedule", "step", list(schedules.NAMES), "step: the recipe's (x0.1 "
                      "at epochs 30, 60, 80); cosine.", flag_values=fv)
    flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.", flag_values=fv)
    flags.DEFINE_enum("weight_decay_mode", "all", list(losses.WEIGHT_DECAY_MODES),
                      "all: L2 on every kernel, bias and BN parameter (the recipe); kernels: "
                      "kernels only; decoupled: AdamW/SGDW-style shrinkage.", flag_values=fv)
    flags.DEFINE_integer("grad_accum_steps", 1, "Micro-batches per optimizer step: each takes "
                         "batch_size / (workers x N) examples, their gradients are summed and "
                         "all-reduced once; --batch_size stays the global batch of one step, "
                         "so the LR schedule and steps per epoch do not change. Batch norm "
                         "normalizes each micro-batch on its own statistics.", flag_values=fv)
    flags.DEFINE_float("ema_decay", None, "Keep an exponential moving average of the weights "
                       "and BN statistics with this decay (e.g. 0.9998), warmed up as "
                       "min(D, (1 + t) / (10 + t)); evaluation reports it as validation_ema; "
                       "launch.export --ema exports it.", flag_values=fv)
    flags.DEFINE_boolean("fp16_allreduce", False, "Compress gradients to fp16 for the "
                         "all-reduce.", flag_values=fv)
