"""Train (or evaluate) a DenseNet: `python -m launch.train --flagfile=launch/recipes/...`.

Accepts the vendor recipe's command line flag for flag (see launch/train_flags/ and
--helpfull). Under horovodrun/mpirun the same command trains data-parallel; rank 0 logs and
writes files. Bad flags, data or checkpoints end with one line naming the culprit, exit code 1.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import contextlib
import os
import random
import sys

import tensorflow as tf
from absl import app, flags, logging

import engine
import nets
from engine import distributed, run_format
from launch import devices, train_flags
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
            log = print if backend.is_chief else (lambda *a, **k: None)
            trainer, data = build(FLAGS, backend=backend, cleanup=cleanup, log=log)
            try:
                if FLAGS.evaluate_checkpoint_path:
                    trainer.evaluate_checkpoint(FLAGS.evaluate_checkpoint_path)
                    return 0
                summary = trainer.train()
            except tf.errors.OpError as e:
                splits = (["validation"] if FLAGS.evaluate_checkpoint_path
                          else ["train", "validation"])
                raise data.explain(e, splits=splits) from None
            log(f"done: {summary}")
            log(f"checkpoints: {os.path.join(FLAGS.model_dir, 'checkpoints')}\n"
                f"metrics:     {os.path.join(FLAGS.model_dir, run_format.METRICS_FILE)}\n"
                f"tensorboard: tensorboard --logdir {FLAGS.model_dir}")
            return 0
        except engine.StopRequested as stop:
            log(f"stopped by a signal after step {stop.args[0]}; checkpoint written; run the "
                f"same command again to resume")
            return 0
        except ONE_LINE_ERRORS as e:
            return report("train", e)


def start_backend(fv):
    """Horovod (or one process) on the device the flags ask for."""
    devices.horovod_timeline(fv.horovod_timeline)
    devices.horovod_stall_defaults(fv.stall_timeout)
    if fv.run_on_hpu:
        devices.load_habana()
    backend = distributed.create(use_horovod=True if fv.use_hpu_strategy else None,
                                 fp16_allreduce=fv.fp16_allreduce)
    devices.pin_gpu(backend.local_rank)
    return backend


def shared_seed(fv, backend):
    """--seed, or one drawn by rank 0 and shared (workers must agree on shard orders)."""
    seed = fv.seed if fv.seed is not None else random.SystemRandom().randrange(1, 2**31)
    shared = tf.Variable(seed, dtype=tf.int64)
    backend.broadcast_variables([shared])
    return int(shared.numpy())


def build(fv, *, backend, cleanup, log):
    """(Trainer, input module) of the flags; what must be released goes on `cleanup`."""
    seed = shared_seed(fv, backend)
    if fv.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(seed)
    if backend.is_chief:
        cleanup.callback(engine.ModelDirLock(fv.model_dir).release)
    data = objects.input_module(fv)
    for split in ("train", "validation") if fv.skip_corrupt else ():
        bad = data.bad_examples(split)
        if bad:
            path, index, reason = bad[0]
            log(f"skipping {len(bad)} bad {split} example(s), first {path} record {index}: "
                f"{reason}")
    resolved = objects.resolve(fv, seed=seed, data=data)
    if backend.is_chief:
        train_flags.write_flagfile(os.path.join(fv.model_dir, "flags.txt"), fv, resolved)
    net = objects.net(fv, resolved)
    step = objects.train_step(fv, model=net, backend=backend, resolved=resolved)
    guard = objects.stall_watchdog(fv, backend.rank)
    if guard:
        cleanup.callback(guard.stop)
    trainer = engine.Trainer(train_step=step, data=data, backend=backend,
                             config=objects.train_config(fv, resolved), watchdog=guard,
                             tensor_dumps=objects.tensor_dumps(fv, backend.rank), log=log)
    log(f"{fv.model} ({nets.parameter_count(net):,} parameters), {fv.dtype}, {backend.name}, "
        f"global batch {fv.batch_size}, {resolved.steps_per_epoch} steps/epoch, {fv.epochs} "
        f"epochs, seed {seed}")
    return trainer, data


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)


if __name__ == "__main__":
    run()
