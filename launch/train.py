"""Train (or evaluate) a DenseNet: `python -m launch.train --flagfile=launch/recipes/...`.

Accepts the vendor recipe's command line flag for flag (see launch/train_flags.py and
--helpfull). Under horovodrun/mpirun the same command trains data-parallel; rank 0 logs and
writes files. Bad flags, data or checkpoints end with one line naming the culprit, exit code 1.
"""
import os
import random
import re
import sys

from absl import app, flags, logging

from launch import train_flags

FLAGS = flags.FLAGS


class UsageProblem(Exception):
    pass


def resolve_seed(backend):
    """--seed, or one drawn by rank 0 and shared (workers must agree on shard orders)."""
    import tensorflow as tf
    seed = FLAGS.seed if FLAGS.seed is not None else random.SystemRandom().randrange(1, 2**31)
    shared = tf.Variable(seed, dtype=tf.int64)
    backend.broadcast_variables([shared])
    return int(shared.numpy())


def build_input():
    import input as inputs
    options = dict(image_size=FLAGS.image_size, num_classes=FLAGS.num_classes)
    if FLAGS.input == "synthetic":
        return inputs.build("synthetic", num_classes=FLAGS.num_classes or 1000,
                            image_size=FLAGS.image_size)
    return inputs.build(
        FLAGS.input, dataset_dir=FLAGS.dataset_dir, train_subset=FLAGS.train_subset,
        val_subset=FLAGS.val_subset, preprocessing=FLAGS.preprocessing,
        num_parallel_calls=FLAGS.dataset_num_parallel_calls,
        deterministic=FLAGS.deterministic, shuffle_buffer=FLAGS.shuffle_buffer,
        skip_corrupt=FLAGS.skip_corrupt, **options)


def build_net(num_classes, seed):
    import nets
    options = dict(dropout_rate=FLAGS.dropout_rate, bn_epsilon=FLAGS.bn_epsilon,
                   kernel_initializer=FLAGS.kernel_initializer,
                   compute_dtype={"fp32": "float32", "bf16": "bfloat16"}[FLAGS.dtype],
                   data_format=FLAGS.data_format, recompute=FLAGS.recompute, seed=seed)
    if FLAGS.model == "densenet":
        options.update(blocks=[int(b) for b in FLAGS.blocks], growth_rate=FLAGS.growth_rate,
                       stem_filters=FLAGS.stem_filters)
    net = nets.build(FLAGS.model, num_classes=num_classes, **options)
    if FLAGS.init_checkpoint:
        initialize(net, FLAGS.init_checkpoint, FLAGS.init_skip_head,
                   lambda classes: nets.build(FLAGS.model, num_classes=classes, **options))
    return net


_HEAD_KEY = "net/classifier/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def initialize(net, path, skip_head, build_like):
    """Weights from a Keras .h5 file or a checkpoint of ours (the net only; optimizer state and
    step are not taken). skip_head keeps this net's freshly initialized classifier."""
    import tensorflow as tf
    import nets
    from engine import CheckpointError
    from engine.checkpoints import restore_net
    if path.endswith(".h5"):
        nets.load_keras_weights(net, path, skip_head=skip_head)
        return
    try:
        shapes = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"--init_checkpoint {path} cannot be read: "
                              f"{str(e).splitlines()[0]}") from None
    if _HEAD_KEY not in shapes:
        raise CheckpointError(f"--init_checkpoint {path} is not a checkpoint of this engine's "
                              f"nets")
    classes = shapes[_HEAD_KEY][1]
    if classes != net.num_classes and not skip_head:
        raise CheckpointError(f"--init_checkpoint {path} has a {classes}-class head, the net "
                              f"{net.num_classes} classes; add --init_skip_head to fine-tune")
    source = net if classes == net.num_classes else build_like(classes)
    head = [v.numpy() for v in net.classifier.variables_in_keras_order()]
    restore_net(source, path)
    if source is not net:
        for mine, theirs in zip(net.layers_in_order(), source.layers_in_order()):
            if mine is not net.classifier:
                for a, b in zip(mine.variables_in_keras_order(), theirs.variables_in_keras_order()):
                    a.assign(b)
    if skip_head:
        for variable, value in zip(net.classifier.variables_in_keras_order(), head):
            variable.assign(value)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.set_verbosity(logging.ERROR)  # TF's Python INFO/WARNING lines drown ours
    from launch import devices
    devices.horovod_timeline(FLAGS.horovod_timeline)

    import tensorflow as tf
    import engine
    import input as inputs
    import nets
    from engine import distributed, optimizers, schedules

    if FLAGS.run_on_hpu:
        try:
            devices.load_habana()
        except devices.DeviceError as e:
            sys.stderr.write(f"train: {e}\n")
            return 1
    backend = distributed.create(
        use_horovod=True if FLAGS.use_hpu_strategy else None,
        fp16_allreduce=FLAGS.fp16_allreduce)
    devices.pin_gpu(backend.local_rank)
    log = print if backend.is_chief else (lambda *a, **k: None)
    seed = resolve_seed(backend)
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(seed)

    lock = None
    try:
        if backend.is_chief:
            lock = engine.ModelDirLock(FLAGS.model_dir)
        data = build_input()
        num_classes = FLAGS.num_classes or data.num_classes
        if FLAGS.skip_corrupt:
            for split in ("train", "validation"):
                bad = data.bad_examples(split)
                if bad:
                    path, index, reason = bad[0]
                    log(f"skipping {len(bad)} bad {split} example(s), first {path} record "
                        f"{index}: {reason}")
        steps_per_epoch = FLAGS.steps_per_epoch
        if steps_per_epoch is None:
            steps_per_epoch = data.num_examples("train") // FLAGS.batch_size
            if steps_per_epoch == 0:
                raise UsageProblem(f"--batch_size {FLAGS.batch_size} is larger than the "
                                   f"{data.num_examples('train')} training examples")
        # What this run resolved, so that --flagfile=<model_dir>/flags.txt reproduces it.
        FLAGS.seed, FLAGS.num_classes, FLAGS.steps_per_epoch = seed, num_classes, steps_per_epoch
        if backend.is_chief:
            train_flags.write_flagfile(os.path.join(FLAGS.model_dir, "flags.txt"),
                                       train_flags.__name__)
        net = build_net(num_classes, seed)
        optimizer = optimizers.build(
            FLAGS.optimizer, decoupled_weight_decay=(FLAGS.weight_decay if
                                                     FLAGS.weight_decay_mode == "decoupled"
                                                     else 0.0))
        lr_fn = schedules.build(FLAGS.lr_schedule, FLAGS.initial_lr, steps_per_epoch,
                                FLAGS.warmup_epochs, FLAGS.epochs)
        step = engine.TrainStep(net, optimizer, backend, lr_fn, FLAGS.weight_decay,
                                FLAGS.weight_decay_mode, FLAGS.label_smoothing,
                                FLAGS.jit_compile)
        progress = FLAGS.progress if FLAGS.progress is not None else sys.stdout.isatty()
        config = engine.TrainConfig(
            model_dir=FLAGS.model_dir, global_batch=FLAGS.batch_size, epochs=FLAGS.epochs,
            steps_per_epoch=steps_per_epoch, validation_steps=FLAGS.validation_steps, seed=seed,
            log_steps=FLAGS.log_steps, summary_steps=FLAGS.save_summary_steps,
            checkpoint_steps=FLAGS.checkpoint_steps, keep_checkpoints=FLAGS.keep_checkpoints,
            steps_per_loop=FLAGS.steps_per_loop, profile_steps=train_flags.profile_window(),
            resume_from=FLAGS.resume_from_checkpoint_path,
            resume_from_epoch=(FLAGS.resume_from_epoch if FLAGS.resume_from_checkpoint_path
                               else None),
            allow_fresh_start=FLAGS.allow_fresh_start, progress=progress)
        trainer = engine.Trainer(net, optimizer, data, backend, step, config, log=log)
        log(f"{FLAGS.model} ({nets.parameter_count(net):,} parameters), {FLAGS.dtype}, "
            f"{backend.name}, global batch {FLAGS.batch_size}, {steps_per_epoch} steps/epoch, "
            f"{FLAGS.epochs} epochs, seed {seed}")
        if FLAGS.evaluate_checkpoint_path:
            trainer.evaluate_checkpoint(FLAGS.evaluate_checkpoint_path)
            return 0
        try:
            summary = trainer.train()
        except tf.errors.OpError as e:
            raise _input_error(data, e) from None
        log(f"done: {summary}")
        log(f"checkpoints: {os.path.join(FLAGS.model_dir, 'checkpoints')}\n"
            f"metrics:     {os.path.join(FLAGS.model_dir, 'metrics.jsonl')}\n"
            f"tensorboard: tensorboard --logdir {FLAGS.model_dir}")
        return 0
    except engine.StopRequested as stop:
        log(f"stopped by a signal after step {stop.args[0]}; checkpoint written; run the same "
            f"command again to resume")
        return 0
    except (inputs.InputError, engine.CheckpointError, engine.ModelDirLocked,
            engine.NonFiniteLoss, nets.WeightsMismatch, devices.DeviceError,
            UsageProblem) as e:
        sys.stderr.write(f"train: {e}\n")
        return 1
    finally:
        if lock:
            lock.release()


def _input_error(data, error):
    """An error raised inside the input pipeline, located (file and record) when possible."""
    from input import InputError
    from input.records import one_line
    text = one_line(error)
    message = str(error)
    if "input error: label" in message:
        # tf.debugging.Assert prints its data as [item] [item] ...: make it one sentence.
        first = message.split("\n")[0]
        items = re.findall(r"\[([^\[\]]*)\]", first)
        items = items[next(i for i, item in enumerate(items) if "input error: label" in item):]
        text = " ".join(i.strip().removeprefix("b'").strip("'\"") for i in items)
        return InputError(text.replace("input error: ", ""))
    located = []
    for split in ("train", "validation"):
        try:
            located = data.locate_error(split)
        except Exception:  # noqa: BLE001 - a diagnosis must not hide the original error
            located = []
        if located:
            break
    if located:
        return InputError(f"bad input: {located[0]}")
    return InputError(f"training stopped: {text}")


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)


if __name__ == "__main__":
    run()
