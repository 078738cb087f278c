"""Where a profiled run's steps spend their time, read offline in the terminal:

    python -m launch.profile MODEL_DIR [--format=json] [--plot=steps.png]

Reads the capture that `python -m launch.train --profile_steps=START,END` wrote under
MODEL_DIR/train/plugins/profile (the newest, or --run) with the profiler's own converters, and
prints per captured step its wall time split into input wait, forward, backward, all-reduce,
optimizer update and other host time; the 10 ops with the most self time; with the run's
--horovod_timeline, the gradient group's negotiation and transfer per step; the cost of
profiling (from metrics.jsonl); and one line of advice when one share clearly dominates.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import json
import os
import sys

from absl import app, flags

from launch.errors import ONE_LINE_ERRORS, CommandError, report

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "text", ["text", "json"], "text: tables; json: one JSON object.")
flags.DEFINE_string("plot", None, "Also draw a stacked bar per step into this PNG file.")
flags.DEFINE_string("run", None, "The capture to read (a directory name under "
                    "MODEL_DIR/train/plugins/profile); default: the newest.")
flags.DEFINE_string("horovod_timeline", None, "Horovod's timeline of the run; default: the "
                    "run's own --horovod_timeline, when flags.txt names one that exists.")


def _run_timeline(model_dir):
    """The timeline the run wrote (its flags.txt's --horovod_timeline), if it is still there."""
    from launch import run_dir
    path = os.path.join(model_dir, "flags.txt")
    if not os.path.exists(path):
        return None
    timeline = run_dir.read_flags(path).horovod_timeline
    return timeline if timeline and os.path.exists(timeline) else None


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("give one training run: python -m launch.profile MODEL_DIR")
    model_dir = argv[1]
    from launch.profiling import report as profile_report
    try:
        timeline = FLAGS.horovod_timeline or _run_timeline(model_dir)
        if FLAGS.horovod_timeline and not os.path.exists(FLAGS.horovod_timeline):
            raise CommandError(f"{FLAGS.horovod_timeline}: no such file (--horovod_timeline)")
        result = profile_report.build(model_dir, run=FLAGS.run, timeline=timeline)
        if FLAGS.plot:
            try:
                profile_report.plot(result, FLAGS.plot)
            except ImportError:
                raise CommandError("--plot needs matplotlib (pip install matplotlib)") from None
            except OSError as e:
                raise CommandError(f"{FLAGS.plot}: {e.strerror} (--plot)") from None
    except ONE_LINE_ERRORS as e:
        return report("profile", e)
    if FLAGS.format == "json":
        print(json.dumps(result, indent=1))
    else:
        print(profile_report.text(result))
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
