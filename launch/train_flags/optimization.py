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
    flags.DEFINE_boolean("fp16_allreduce", False, "Compress gradients to fp16 for the "
                         "all-reduce.", flag_values=fv)
