"""A training run put together from the flags, in the order the run needs it: what every worker
must agree on first (the seed, the dtype, the slots a resumed run recorded), then the input, the
net, the train step and the watchdog, then the Trainer around them.

launch.train agrees by collectives before training; elastic training (launch/elastic.py) may run
no collective before Horovod's elastic loop (horovod#2189: a worker that joins later would block
in it), so it settles each value on its own worker and takes rank 0's when the loop synchronizes.
"""
import dataclasses
import os
import random
from typing import Optional

import tensorflow as tf

import engine
import nets
from launch import hardware, onednn, run_dir, train_flags
from launch.errors import CommandError
from launch.train_flags import objects


@dataclasses.dataclass(frozen=True)
class Settled:
    """What every worker must hold alike before it builds: the run's seed, its compute dtype,
    and the slot count its checkpoints recorded (None: a fresh run, or one from before slots)."""
    seed: int
    dtype: str
    recorded_slots: Optional[int]


@dataclasses.dataclass
class Parts:
    """The run's parts that outlive a change of workers: the input module, the net and the
    train step (which owns the optimizer and the weight average), the watchdog."""
    data: object
    resolved: objects.Resolved
    plan: objects.SlotPlan
    net: object
    step: engine.TrainStep
    guard: Optional[object]  # engine.watchdog.Watchdog, or None (--stall_timeout=0)
    pools: hardware.ThreadPools
    support: hardware.Bf16Support


def rank0_value(backend, value):
    """Rank 0's integer `value`, on every worker."""
    shared = tf.Variable(value, dtype=tf.int64)
    backend.broadcast_variables([shared])
    return int(shared.numpy())


def drawn_seed(fv):
    return (fv.seed if fv.seed is not None
            else random.SystemRandom().randrange(1, train_flags.MAX_SEED + 1))


def local_dtype(fv, log, support, *, is_chief):
    """--dtype as this worker would compute it: auto is bf16 where its device computes bf16
    natively, else fp32; bf16 where it is emulated warns in one line."""
    if fv.dtype == "auto":
        return "bf16" if support.native else "fp32"
    if fv.dtype == "bf16" and not support.native and is_chief:
        slowdown = hardware.bf16_slowdown()
        log(f"warning: --dtype=bf16 on {support.device}, which has {support.missing}: "
            f"TensorFlow emulates bf16 there (a convolution probe here ran {slowdown:.1f}x "
            f"fp32's time); --dtype=fp32, or --dtype=auto to use bf16 only where native")
    return fv.dtype


def local_recorded_slots(fv, backend):
    """The slots the run's checkpoints recorded, read on rank 0 (hosts without a shared file
    system hold the checkpoints on its host); None elsewhere."""
    if not backend.is_chief:
        return None
    return engine.recorded_slots(fv.model_dir, fv.resume_from_checkpoint_path)


def settle_locally(fv, backend, log, support) -> Settled:
    """Each value as this worker sees it, without a collective (elastic training)."""
    return Settled(seed=drawn_seed(fv),
                   dtype=local_dtype(fv, log, support, is_chief=backend.is_chief),
                   recorded_slots=local_recorded_slots(fv, backend))


def agree(fv, backend, log, support) -> Settled:
    """Rank 0's values on every worker (one answer for --dtype=auto, for a drawn seed)."""
    mine = settle_locally(fv, backend, log, support)
    dtype = mine.dtype
    if fv.dtype == "auto":
        dtype = "bf16" if rank0_value(backend, int(dtype == "bf16")) else "fp32"
    return Settled(seed=rank0_value(backend, mine.seed), dtype=dtype,
                   recorded_slots=rank0_value(backend, mine.recorded_slots or 0) or None)


def onednn_choice():
    """What launch/onednn.py decided at start, for machine.json (None if it did not run)."""
    decision = onednn.settled()
    return dataclasses.asdict(decision) if decision else None


def check_layout(fv):
    problem = None if fv.data_format == "NHWC" else hardware.nchw_problem()
    if problem:
        raise CommandError(f"--data_format=NCHW: {problem}; NCHW is for GPUs, use "
                           f"--data_format=NHWC here")


def thread_pools(fv):
    return hardware.thread_pools(intra_op=fv.intra_op_threads, inter_op=fv.inter_op_threads,
                                 dataset_private=fv.dataset_private_threads)


def resolve(fv, *, backend, data, settled, workers):
    """(Resolved, SlotPlan) of the settled values on `workers` workers; rank 0 writes them into
    <model_dir>/flags.txt (what reproduces the run)."""
    plan = objects.slot_plan(fv, workers=workers, recorded=settled.recorded_slots)
    resolved = objects.resolve(fv, seed=settled.seed, data=data, dtype=settled.dtype,
                               slots=plan.slots)
    if backend.is_chief:
        train_flags.write_flagfile(os.path.join(fv.model_dir, "flags.txt"), fv, resolved)
    return resolved, plan


def build_parts(fv, *, backend, settled, support, cleanup, log) -> Parts:
    """The input, net, train step and watchdog of the flags; what must be released goes on
    `cleanup`. Runs no collective."""
    check_layout(fv)
    if fv.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(settled.seed)
    pools = thread_pools(fv)
    data = objects.input_module(fv, private_threads=pools.dataset_private)
    for split in ("train", "validation") if fv.skip_corrupt else ():
        bad = data.bad_examples(split)
        if bad:
            path, index, reason = bad[0]
            log(f"skipping {len(bad)} bad {split} example(s), first {path} record {index}: "
                f"{reason}")
    resolved, plan = resolve(fv, backend=backend, data=data, settled=settled,
                             workers=backend.size)
    if backend.is_chief:
        run_dir.write_machine(fv.model_dir, {
            "device": support.device, "bf16_native": support.native,
            "bf16_missing": support.missing, "onednn": hardware.onednn_enabled(),
            "onednn_choice": onednn_choice(), "dtype": settled.dtype,
            "threads": dataclasses.asdict(pools)})
    net = objects.net(fv, resolved)
    step = objects.train_step(fv, model=net, backend=backend, resolved=resolved,
                              micro_batches=plan.micro_batches)
    guard = objects.stall_watchdog(fv, backend.rank)
    if guard:
        cleanup.callback(guard.stop)
    return Parts(data=data, resolved=resolved, plan=plan, net=net, step=step, guard=guard,
                 pools=pools, support=support)


def trainer(fv, parts, *, backend, log, hooks=(), before_checkpoint=None):
    """The Trainer around the parts, for the workers there now."""
    return engine.Trainer(train_step=parts.step, data=parts.data, backend=backend,
                          config=objects.train_config(fv, parts.resolved), watchdog=parts.guard,
                          tensor_dumps=objects.tensor_dumps(fv, backend.rank), log=log,
                          hooks=hooks, before_checkpoint=before_checkpoint)


def describe(fv, parts, *, backend, settled):
    """The run's first line: the net, dtype, workers, slots, epochs, seed, threads, oneDNN."""
    plan, resolved, pools = parts.plan, parts.resolved, parts.pools
    dtype = settled.dtype
    picked = f"{dtype} (--dtype=auto)" if fv.dtype == "auto" else dtype
    return (f"{fv.model} ({nets.parameter_count(parts.net):,} parameters), {picked}, "
            f"{backend.name}, global batch {fv.batch_size} in {plan.slots} micro-batch slot"
            f"{'s' * (plan.slots > 1)} ({plan.micro_batches} per worker), "
            f"{resolved.steps_per_epoch} steps/epoch, {fv.epochs} epochs, seed {settled.seed}"
            + (f"; {pools.describe()}" if pools.describe() else "")
            + (f"; {onednn.settled().describe()}" if onednn.settled() else ""))
