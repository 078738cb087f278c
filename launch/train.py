"""Train (or evaluate) a DenseNet: `python -m launch.train --flagfile=launch/recipes/...`.

Accepts the vendor recipe's command line flag for flag (see launch/train_flags/ and
--helpfull). Under horovodrun/mpirun the same command trains data-parallel; rank 0 logs and
writes files. Bad flags, data or checkpoints end with one line naming the culprit, exit code 1.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import contextlib
import os
import sys

import tensorflow as tf
from absl import app, flags, logging

import engine
from engine import distributed, run_format
from launch import assemble, devices, elastic, hardware, train_flags
from launch.errors import ONE_LINE_ERRORS, report
from launch.train_flags import objects

FLAGS = flags.FLAGS
train_flags.define(FLAGS)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.ERROR)  # TF's Python INFO/WARNING lines drown ours
    log = print
    with contextlib.ExitStack() as cleanup:
        try:
            backend = start_backend(FLAGS)

            def log(*args, **kwargs):  # the chief of the moment: elastic training renumbers
                if backend.is_chief:
                    print(*args, **kwargs)
            if elastic.wanted(FLAGS):
                job = elastic.ElasticTraining(FLAGS, backend=backend, cleanup=cleanup, log=log)
                train, data = job.run, job.data
            else:
                trainer, data = build(FLAGS, backend=backend, cleanup=cleanup, log=log)
                train = trainer.train
            try:
                if FLAGS.evaluate_checkpoint_path:
                    trainer.evaluate_checkpoint(FLAGS.evaluate_checkpoint_path)
                    return 0
                summary = train()
            except tf.errors.OpError as e:
                splits = (["validation"] if FLAGS.evaluate_checkpoint_path
                          else ["train", "validation"])
                raise data.explain(e, splits=splits) from None
            log(f"done: {summary}")
            log(f"checkpoints: {os.path.join(FLAGS.model_dir, 'checkpoints')}\n"
                f"metrics:     {os.path.join(FLAGS.model_dir, run_format.METRICS_FILE)}\n"
                f"tensorboard: tensorboard --logdir {FLAGS.model_dir}")
            return 0
        except engine.TargetReached as reached:
            record = reached.args[0]
            if record is not None:
                log(f"reached --target_accuracy={record['target']}: validation top-1 "
                    f"{record['top1']:.4f} at step {record['step']} (epoch {record['epoch']}), "
                    f"after {record['elapsed_sec']:.1f} s of training and {record['images']:,} "
                    f"images; stopped with its checkpoint")
            return 0
        except engine.StopRequested as stop:
            log(f"stopped by a signal after step {stop.args[0]}; checkpoint written; run the "
                f"same command again to resume")
            return 0
        except ONE_LINE_ERRORS as e:
            return report("train", e)


def start_backend(fv):
    """Horovod (or one process) on the device the flags ask for, its thread pools sized first
    (TensorFlow fixes them when its first op runs)."""
    hardware.apply_thread_pools(assemble.thread_pools(fv))
    devices.horovod_timeline(fv.horovod_timeline)
    devices.horovod_stall_defaults(fv.stall_timeout)
    if fv.run_on_hpu:
        devices.load_habana()
    horovod = fv.use_hpu_strategy or elastic.launched()  # elastic: Horovod from 1 worker on
    backend = distributed.create(use_horovod=True if horovod else None,
                                 fp16_allreduce=fv.fp16_allreduce)
    devices.pin_gpu(backend.local_rank)
    return backend


def build(fv, *, backend, cleanup, log):
    """(Trainer, input module) of the flags; what must be released goes on `cleanup`."""
    assemble.check_layout(fv)
    support = hardware.bf16_support(hpu=fv.run_on_hpu)
    settled = assemble.agree(fv, backend, log, support)
    # Refused before anything is written (the lock creates model_dir).
    objects.slot_plan(fv, workers=backend.size, recorded=settled.recorded_slots)
    if backend.is_chief:
        cleanup.callback(engine.ModelDirLock(fv.model_dir).release)
    parts = assemble.build_parts(fv, backend=backend, settled=settled, support=support,
                                 cleanup=cleanup, log=log)
    trainer = assemble.trainer(fv, parts, backend=backend, log=log)
    log(assemble.describe(fv, parts, backend=backend, settled=settled))
    return trainer, parts.data


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)


if __name__ == "__main__":
    run()
