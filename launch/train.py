"""Train (or evaluate) a DenseNet: `python -m launch.train --flagfile=launch/recipes/...`.

Accepts the vendor recipe's command line flag for flag (see launch/train_flags/ and
--helpfull). Under horovodrun/mpirun the same command trains data-parallel; rank 0 logs and
writes files. Bad flags, data or checkpoints end with one line naming the culprit, exit code 1.
"""
import os
import random
import sys

from absl import app, flags, logging

from launch import train_flags
from launch.errors import ONE_LINE_ERRORS, CommandError, report

FLAGS = flags.FLAGS
train_flags.define(FLAGS)


def resolve_seed(backend):
    """--seed, or one drawn by rank 0 and shared (workers must agree on shard orders)."""
    import tensorflow as tf
    seed = FLAGS.seed if FLAGS.seed is not None else random.SystemRandom().randrange(1, 2**31)
    shared = tf.Variable(seed, dtype=tf.int64)
    backend.broadcast_variables([shared])
    return int(shared.numpy())


def build_net(seed):
    """The net of the flags, initialized from --init_checkpoint when given."""
    import nets
    from engine import HeadMismatch, restore_net
    net = nets.build(FLAGS.model, **train_flags.net_options(FLAGS, seed=seed))
    path = FLAGS.init_checkpoint
    if path and path.endswith(".h5"):
        nets.load_keras_weights(net, path, skip_head=FLAGS.init_skip_head)
    elif path:
        try:
            restore_net(net, path, skip_head=FLAGS.init_skip_head)
        except HeadMismatch as e:
            raise CommandError(f"--init_checkpoint: {e}; add --init_skip_head to fine-tune "
                               f"with a new classifier") from None
    return net


def steps_per_epoch(data):
    if FLAGS.steps_per_epoch is not None:
        return FLAGS.steps_per_epoch
    steps = data.num_examples("train") // FLAGS.batch_size
    if steps == 0:
        raise CommandError(f"--batch_size {FLAGS.batch_size} is larger than the "
                           f"{data.num_examples('train')} training examples")
    return steps


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.ERROR)  # TF's Python INFO/WARNING lines drown ours
    from launch import devices
    devices.horovod_timeline(FLAGS.horovod_timeline)
    devices.horovod_stall_defaults(FLAGS.stall_timeout)

    import tensorflow as tf

    import engine
    import input as inputs
    import nets
    from engine import distributed, ema, optimizers, schedules, watchdog

    lock, log, guard = None, print, None
    try:
        if FLAGS.run_on_hpu:
            devices.load_habana()
        backend = distributed.create(
            use_horovod=True if FLAGS.use_hpu_strategy else None,
            fp16_allreduce=FLAGS.fp16_allreduce)
        devices.pin_gpu(backend.local_rank)
        log = print if backend.is_chief else (lambda *a, **k: None)
        seed = resolve_seed(backend)
        if FLAGS.deterministic:
            tf.config.experimental.enable_op_determinism()
        tf.random.set_seed(seed)
        if backend.is_chief:
            lock = engine.ModelDirLock(FLAGS.model_dir)
        data = inputs.build(FLAGS.input, **train_flags.input_options(FLAGS))
        if FLAGS.skip_corrupt:
            for split in ("train", "validation"):
                bad = data.bad_examples(split)
                if bad:
                    path, index, reason = bad[0]
                    log(f"skipping {len(bad)} bad {split} example(s), first {path} record "
                        f"{index}: {reason}")
        # What this run resolved, so that --flagfile=<model_dir>/flags.txt reproduces it.
        FLAGS.seed, FLAGS.num_classes = seed, FLAGS.num_classes or data.num_classes
        FLAGS.steps_per_epoch = steps_per_epoch(data)
        if backend.is_chief:
            train_flags.write_flagfile(os.path.join(FLAGS.model_dir, "flags.txt"))
        net = build_net(seed)
        decoupled = FLAGS.weight_decay if FLAGS.weight_decay_mode == "decoupled" else 0.0
        optimizer = optimizers.build(FLAGS.optimizer, decoupled_weight_decay=decoupled)
        lr_fn = schedules.build(FLAGS.lr_schedule, initial_lr=FLAGS.initial_lr,
                                steps_per_epoch=FLAGS.steps_per_epoch,
                                warmup_epochs=FLAGS.warmup_epochs, total_epochs=FLAGS.epochs)
        average = ema.WeightEma(net, FLAGS.ema_decay) if FLAGS.ema_decay else None
        step = engine.TrainStep(net=net, optimizer=optimizer, backend=backend, lr_fn=lr_fn,
                                weight_decay=FLAGS.weight_decay,
                                weight_decay_mode=FLAGS.weight_decay_mode,
                                label_smoothing=FLAGS.label_smoothing,
                                grad_accum_steps=FLAGS.grad_accum_steps, ema=average,
                                jit_compile=FLAGS.jit_compile)
        if FLAGS.stall_timeout:
            guard = watchdog.Watchdog(timeout=FLAGS.stall_timeout,
                                      long_timeout=max(FLAGS.stall_timeout_long,
                                                       FLAGS.stall_timeout),
                                      rank=backend.rank)
        # A progress line rewrites itself with carriage returns: off a terminal (a log file,
        # a pipe) that makes one endless line, so there the plain per-interval lines are printed.
        progress = FLAGS.progress is not False and sys.stdout.isatty()
        config = engine.TrainConfig(
            model_dir=FLAGS.model_dir, batch_size=FLAGS.batch_size, epochs=FLAGS.epochs,
            steps_per_epoch=FLAGS.steps_per_epoch, validation_steps=FLAGS.validation_steps,
            seed=seed, log_steps=FLAGS.log_steps, save_summary_steps=FLAGS.save_summary_steps,
            checkpoint_steps=FLAGS.checkpoint_steps, keep_checkpoints=FLAGS.keep_checkpoints,
            steps_per_loop=FLAGS.steps_per_loop, profile_steps=train_flags.profile_window(),
            resume_from_checkpoint_path=FLAGS.resume_from_checkpoint_path,
            resume_from_epoch=(FLAGS.resume_from_epoch if FLAGS.resume_from_checkpoint_path
                               else None),
            allow_fresh_start=FLAGS.allow_fresh_start, progress=progress,
            precise_bn_batches=FLAGS.precise_bn_batches)
        trainer = engine.Trainer(data=data, backend=backend,
                                 train_step=step, config=config, watchdog=guard,
                                 tensor_dumps=train_flags.tensor_dumps(backend.rank), log=log)
        log(f"{FLAGS.model} ({nets.parameter_count(net):,} parameters), {FLAGS.dtype}, "
            f"{backend.name}, global batch {FLAGS.batch_size}, {FLAGS.steps_per_epoch} "
            f"steps/epoch, {FLAGS.epochs} epochs, seed {seed}")
        try:
            if FLAGS.evaluate_checkpoint_path:
                trainer.evaluate_checkpoint(FLAGS.evaluate_checkpoint_path)
                return 0
            summary = trainer.train()
        except tf.errors.OpError as e:
            splits = ["validation"] if FLAGS.evaluate_checkpoint_path else ["train", "validation"]
            raise data.explain(e, splits=splits) from None
        log(f"done: {summary}")
        log(f"checkpoints: {os.path.join(FLAGS.model_dir, 'checkpoints')}\n"
            f"metrics:     {os.path.join(FLAGS.model_dir, 'metrics.jsonl')}\n"
            f"tensorboard: tensorboard --logdir {FLAGS.model_dir}")
        return 0
    except engine.StopRequested as stop:
        log(f"stopped by a signal after step {stop.args[0]}; checkpoint written; run the "
            f"same command again to resume")
        return 0
    except ONE_LINE_ERRORS as e:
        return report("train", e)
    finally:
        if guard:
            guard.stop()
        if lock:
            lock.release()


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)


if __name__ == "__main__":
    run()
