"""Flags of the loop: logging, checkpoints (the best kept apart), evaluation cadence, a target
accuracy, steps per call, stop latency, XLA, profiling, tensor dumps, progress."""
from absl import flags

from engine import best, tensor_dumps

# --steps_per_loop=auto's most steps per call: the watchdog's and the progress line's
# granularity (both see a call as one event).
AUTO_STEPS_PER_LOOP_CAP = 100


def define(fv: flags.FlagValues):
    flags.DEFINE_integer("log_steps", 100, "Steps between training logs and metrics.jsonl "
                         "records.", flag_values=fv)
    flags.DEFINE_integer("checkpoint_steps", None, "Also checkpoint every N steps (epoch ends "
                         "always).", flag_values=fv)
    flags.DEFINE_integer("keep_checkpoints", 5, "Checkpoints kept.", flag_values=fv)
    flags.DEFINE_enum("keep_best", None, list(best.METRICS), "Also keep the checkpoint whose "
                      "evaluation scored best on this validation metric (_ema: the weight "
                      "average's), in model_dir/best/, apart from --keep_checkpoints and across "
                      "resumes; launch.export --best exports it.", flag_values=fv)
    flags.DEFINE_float("target_accuracy", None, "Stop after the first evaluation whose "
                       "validation top-1 reaches this (in (0, 1]), with a checkpoint and exit "
                       "0; metrics.jsonl records the step, epoch, training seconds (all "
                       "segments) and images seen (split time_to_accuracy).", flag_values=fv)
    flags.DEFINE_integer("validation_freq", 1, "Evaluate every N epochs (Keras fit's "
                         "validation_freq), and always after the last; precise BN statistics "
                         "are recomputed only before an evaluation.", flag_values=fv)
    flags.DEFINE_boolean("allow_fresh_start", False, "Start from scratch when model_dir holds "
                         "checkpoints but none loads.", flag_values=fv)
    flags.DEFINE_string("steps_per_loop", "auto", "Steps inside one tf.function call: a "
                        "positive integer, or auto: the steps up to the next event boundary (a "
                        "log, checkpoint, stop check, epoch end), at most "
                        f"{AUTO_STEPS_PER_LOOP_CAP}, so that Python's cost per call is paid once "
                        "per interval.", flag_values=fv)
    flags.DEFINE_integer("stop_within", 20, "Seconds within which a stop request (SIGTERM, "
                         "SIGINT) ends the run with a checkpoint, plus one step and the "
                         "checkpoint's write: workers agree on a stop check every so many "
                         "steps, from the step time measured at the start.", flag_values=fv)
    flags.DEFINE_boolean("jit_compile", False, "XLA-compile the train step (slower on CPU).",
                         flag_values=fv)
    flags.DEFINE_string("profile_steps", None, "START,END: capture steps START+1..END with the "
                        "TF profiler (TensorBoard's Profile tab).", flag_values=fv)
    flags.DEFINE_string("dump_tensors", None, "Write TF debugger dumps (TensorBoard's Debugger "
                        "V2) of the --dump_steps window into this directory; a NaN/Inf step "
                        "then names the first op whose output held one.", flag_values=fv)
    flags.DEFINE_string("dump_steps", None, "START,END: dump steps START+1..END (default: the "
                        "whole run). Inside the window steps run one per call, each checked.",
                        flag_values=fv)
    flags.DEFINE_enum("dump_mode", "CONCISE_HEALTH", list(tensor_dumps.MODES),
                      "What each op output leaves in the dump (TF's tensor_debug_mode).",
                      flag_values=fv)
    flags.DEFINE_integer("dump_buffer_size", 100_000, "Op executions the dump keeps (the last "
                         "ones: TF's circular buffer), so a long window does not fill the disk.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_boolean("dump_all_ranks", False, "Dump on every worker (into DIR/rank_N), not "
                         "on rank 0 alone.", flag_values=fv)
    flags.DEFINE_string("horovod_timeline", None, "Write the Horovod timeline to this file.",
                        flag_values=fv)
    flags.DEFINE_enum("elastic", "auto", ["auto", "off"], "auto: elastic training when "
                      "horovodrun runs in elastic mode (--min-np, --max-np, "
                      "--host-discovery-script); off: train as under a plain launcher even "
                      "there (a lost worker then ends the job; launch.benchmark "
                      "--mode=elastic compares the two).", flag_values=fv)
    flags.DEFINE_integer("stall_timeout", 600, "Seconds a worker may go without progress (a "
                         "step dispatched, a boundary passed) before it exits with one line, so "
                         "that a hung worker ends the job instead of freezing it; 0: off.",
                         flag_values=fv)
    flags.DEFINE_integer("stall_timeout_long", 3600, "The same for the first step (tracing), "
                         "each evaluation batch and checkpoint writes.", flag_values=fv)
    flags.DEFINE_boolean("progress", None, "A live progress line instead of a line per "
                         "--log_steps; only on a terminal (default: on there), plain lines "
                         "elsewhere.", flag_values=fv)
