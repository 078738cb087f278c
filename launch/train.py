"""Train (or evaluate) a DenseNet: `python -m launch.train --flagfile=launch/recipes/...`.

Accepts the vendor recipe's command line flag for flag (see launch/train_flags/ and
--helpfull). Under horovodrun/mpirun the same command trains data-parallel; rank 0 logs and
writes files. Bad flags, data or checkpoints end with one line naming the culprit, exit code 1.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import contextlib
import dataclasses
import os
import random
import sys

import tensorflow as tf
from absl import app, flags, logging

import engine
import nets
from engine import distributed, run_format
from launch import devices, hardware, onednn, run_dir, train_flags
from launch.errors import ONE_LINE_ERRORS, CommandError, report
from launch.train_flags import objects

FLAGS = flags.FLAGS
train_flags.define(FLAGS)
MAX_SEED = train_flags.MAX_SEED


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
    hardware.apply_thread_pools(thread_pools(fv))
    devices.horovod_timeline(fv.horovod_timeline)
    devices.horovod_stall_defaults(fv.stall_timeout)
    if fv.run_on_hpu:
        devices.load_habana()
    backend = distributed.create(use_horovod=True if fv.use_hpu_strategy else None,
                                 fp16_allreduce=fv.fp16_allreduce)
    devices.pin_gpu(backend.local_rank)
    return backend


def thread_pools(fv):
    return hardware.thread_pools(intra_op=fv.intra_op_threads, inter_op=fv.inter_op_threads,
                                 dataset_private=fv.dataset_private_threads)


def rank0_value(backend, value):
    """Rank 0's integer `value`, on every worker."""
    shared = tf.Variable(value, dtype=tf.int64)
    backend.broadcast_variables([shared])
    return int(shared.numpy())


def shared_seed(fv, backend):
    """--seed, or one drawn by rank 0 and shared (workers must agree on shard orders)."""
    return rank0_value(backend, fv.seed if fv.seed is not None
                       else random.SystemRandom().randrange(1, MAX_SEED + 1))


def settle_dtype(fv, backend, log, support):
    """--dtype as this run computes: auto is bf16 where rank 0's device computes bf16 natively,
    else fp32 (one answer for every worker); bf16 where it is emulated warns in one line."""
    if fv.dtype == "auto":
        return "bf16" if rank0_value(backend, int(support.native)) else "fp32"
    if fv.dtype == "bf16" and not support.native and backend.is_chief:
        slowdown = hardware.bf16_slowdown()
        log(f"warning: --dtype=bf16 on {support.device}, which has {support.missing}: "
            f"TensorFlow emulates bf16 there (a convolution probe here ran {slowdown:.1f}x "
            f"fp32's time); --dtype=fp32, or --dtype=auto to use bf16 only where native")
    return fv.dtype


def onednn_choice():
    """What launch/onednn.py decided at start, for machine.json (None if it did not run)."""
    decision = onednn.settled()
    return dataclasses.asdict(decision) if decision else None


def check_layout(fv):
    problem = None if fv.data_format == "NHWC" else hardware.nchw_problem()
    if problem:
        raise CommandError(f"--data_format=NCHW: {problem}; NCHW is for GPUs, use "
                           f"--data_format=NHWC here")


def build(fv, *, backend, cleanup, log):
    """(Trainer, input module) of the flags; what must be released goes on `cleanup`."""
    check_layout(fv)
    seed = shared_seed(fv, backend)
    support = hardware.bf16_support(hpu=fv.run_on_hpu)
    dtype = settle_dtype(fv, backend, log, support)
    if fv.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(seed)
    # Rank 0's reading: hosts without a shared file system hold the checkpoints on its host.
    local = (engine.recorded_slots(fv.model_dir, fv.resume_from_checkpoint_path)
             if backend.is_chief else None)
    recorded = rank0_value(backend, local or 0) or None
    plan = objects.slot_plan(fv, workers=backend.size, recorded=recorded)
    if backend.is_chief:
        cleanup.callback(engine.ModelDirLock(fv.model_dir).release)
    pools = thread_pools(fv)
    data = objects.input_module(fv, private_threads=pools.dataset_private)
    for split in ("train", "validation") if fv.skip_corrupt else ():
        bad = data.bad_examples(split)
        if bad:
            path, index, reason = bad[0]
            log(f"skipping {len(bad)} bad {split} example(s), first {path} record {index}: "
                f"{reason}")
    resolved = objects.resolve(fv, seed=seed, data=data, dtype=dtype, slots=plan.slots)
    if backend.is_chief:
        train_flags.write_flagfile(os.path.join(fv.model_dir, "flags.txt"), fv, resolved)
        run_dir.write_machine(fv.model_dir, {
            "device": support.device, "bf16_native": support.native,
            "bf16_missing": support.missing, "onednn": hardware.onednn_enabled(),
            "onednn_choice": onednn_choice(), "dtype": dtype,
            "threads": dataclasses.asdict(pools)})
    net = objects.net(fv, resolved)
    step = objects.train_step(fv, model=net, backend=backend, resolved=resolved,
                              micro_batches=plan.micro_batches)
    guard = objects.stall_watchdog(fv, backend.rank)
    if guard:
        cleanup.callback(guard.stop)
    trainer = engine.Trainer(train_step=step, data=data, backend=backend,
                             config=objects.train_config(fv, resolved), watchdog=guard,
                             tensor_dumps=objects.tensor_dumps(fv, backend.rank), log=log)
    picked = f"{dtype} (--dtype=auto)" if fv.dtype == "auto" else dtype
    log(f"{fv.model} ({nets.parameter_count(net):,} parameters), {picked}, {backend.name}, "
        f"global batch {fv.batch_size} in {plan.slots} micro-batch slot"
        f"{'s' * (plan.slots > 1)} ({plan.micro_batches} per worker), "
        f"{resolved.steps_per_epoch} steps/epoch, {fv.epochs} "
        f"epochs, seed {seed}" + (f"; {pools.describe()}" if pools.describe() else "")
        + (f"; {onednn.settled().describe()}" if onednn.settled() else ""))
    return trainer, data


def run():
    def entry(argv):
        sys.exit(main(argv))
    app.run(entry)


if __name__ == "__main__":
    run()
