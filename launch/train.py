"""Train (or evaluate) a DenseNet: `python -m launch.train --flagfile=launch/recipes/...`.

Accepts the vendor recipe's command line flag for flag (see launch/train_flags/ and
--helpfull). Under horovodrun/mpirun the same command trains data-parallel; rank 0 logs and
writes files. Every failure ends in one line naming its cause and what is kept, with an exit
code per kind (launch/failures.py).

The flags become the run's plan once (launch/plan.py), the plan a run (launch/build_run.py): here
for the plain start, in launch/elastic.py under Horovod's elastic launcher.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import contextlib
import os
import sys

from absl import app, flags, logging

import engine
from engine import run_format
from launch import build_run, elastic, failures, hardware, plan, train_flags
from launch.errors import report

FLAGS = flags.FLAGS
train_flags.define(FLAGS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.ERROR)  # TF's Python INFO/WARNING lines drown ours
    log, run = print, failures.RunSoFar()
    failures.terminate_by_exception()
    with contextlib.ExitStack() as cleanup:
        try:
            planned = run.plan = plan.from_flags(FLAGS)
            backend = build_run.start_backend(planned)
            log, run.chief = chief_log(backend), backend.is_chief
            if planned.evaluate_checkpoint_path:
                run.splits = ("validation",)
                plain_run(planned, backend=backend, cleanup=cleanup, log=log, run=run)
                run.trainer.evaluate_checkpoint(planned.evaluate_checkpoint_path)
                return 0
            log(f"done: {train(planned, backend=backend, cleanup=cleanup, log=log, run=run)}")
            log(f"checkpoints: {os.path.join(planned.model_dir, 'checkpoints')}\n"
                f"metrics:     {os.path.join(planned.model_dir, run_format.METRICS_FILE)}\n"
                f"tensorboard: tensorboard --logdir {planned.model_dir}")
            return 0
        except engine.TargetReached as reached:
            if reached.args[0] is not None:
                log(target_reached_line(reached.args[0]))
            return 0
        except engine.StopRequested as stop:
            log(f"stopped by a signal after step {stop.args[0]}; checkpoint written; run the "
                f"same command again to resume")
            return 0
        except Exception as error:  # noqa: BLE001 - every failure ends in its one line
            failures.hold_signals()
            failure = failures.explain(error, run)
            return report("train", failure.line, failure.exit_code)


def chief_log(backend):
    """print on the chief of the moment (elastic training renumbers), nothing elsewhere."""
    def log(*args, **kwargs):
        if backend.is_chief:
            print(*args, **kwargs)
    return log


def train(planned, *, backend, cleanup, log, run):
    """The Trainer's summary of the run: elastic under Horovod's elastic launcher. `run`
    (failures.RunSoFar) learns the input module and the Trainer as they are built."""
    if elastic.wanted(planned):
        job = elastic.ElasticTraining(planned, backend=backend, cleanup=cleanup, log=log)
        run.plan, run.trainer, run.data = job.plan, job.trainer, job.data
        return job.run()
    plain_run(planned, backend=backend, cleanup=cleanup, log=log, run=run)
    return run.trainer.train()


def plain_run(planned, *, backend, cleanup, log, run):
    """The plan settled by rank 0's values on every worker, its input module and Trainer, each
    kept in `run` (failures.RunSoFar) as soon as it exists; what must be released goes on
    `cleanup`."""
    build_run.check_layout(planned)
    run.rank, run.peers = backend.rank, backend.peers()
    bf16 = hardware.bf16_support(hpu=planned.machine.run_on_hpu)
    data = run.data = build_run.open_input(planned, log=log)
    mine = plan.local_settlement(planned, bf16=bf16, is_chief=backend.is_chief, log=log)
    planned = run.plan = planned.settle(plan.agreed_settlement(mine, backend=backend),
                                        workers=backend.size, data=data)
    if backend.is_chief:  # after every refusal: the lock creates model_dir
        cleanup.callback(engine.ModelDirLock(planned.model_dir).release)
        build_run.write_run_files(planned, bf16=bf16)
    parts = build_run.build_parts(planned, data=data, backend=backend, cleanup=cleanup)
    run.trainer = build_run.build_trainer(planned, parts, backend=backend, log=log)
    log(build_run.describe(planned, parts, backend=backend))


def target_reached_line(record):
    return (f"reached --target_accuracy={record['target']}: validation top-1 "
            f"{record['top1']:.4f} at step {record['step']} (epoch {record['epoch']}), after "
            f"{record['elapsed_sec']:.1f} s of training and {record['images']:,} images; "
            f"stopped with its checkpoint")


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)


if __name__ == "__main__":
    run()
