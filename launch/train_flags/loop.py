"""Flags of the loop: logging, checkpoints, steps per call, XLA, profiling, progress."""
from absl import flags


def define(fv: flags.FlagValues):
    flags.DEFINE_integer("log_steps", 100, "Steps between training logs and metrics.jsonl "
                         "records.", flag_values=fv)
    flags.DEFINE_integer("checkpoint_steps", None, "Also checkpoint every N steps (epoch ends "
                         "always).", flag_values=fv)
    flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept.", flag_values=fv)
    flags.DEFINE_boolean("allow_fresh_start", False, "Start from scratch when model_dir holds "
                         "checkpoints but none loads.", flag_values=fv)
    flags.DEFINE_integer("steps_per_loop", 1, "Steps inside one tf.function call.",
                         flag_values=fv)
    flags.DEFINE_boolean("jit_compile", False, "XLA-compile the train step (slower on CPU).",
                         flag_values=fv)
    flags.DEFINE_string("profile_steps", None, "START,END: capture steps START+1..END with the "
                        "TF profiler (TensorBoard's Profile tab).", flag_values=fv)
    flags.DEFINE_string("horovod_timeline", None, "Write the Horovod timeline to this file.",
                        flag_values=fv)
    flags.DEFINE_integer("stall_timeout", 600, "Seconds a worker may go without progress (a "
                         "step dispatched, a boundary passed) before it exits with one line, so "
                         "that a hung worker ends the job instead of freezing it; 0: off.",
                         flag_values=fv)
    flags.DEFINE_integer("stall_timeout_long", 3600, "The same for the first step (tracing), "
                         "each evaluation batch and checkpoint writes.", flag_values=fv)
    flags.DEFINE_boolean("progress", None, "A live progress line (default: when stdout is a "
                         "terminal or under make demo).", flag_values=fv)
