"""A training run built from its plan (launch/plan.py), the one way both starts build it: the
plain start (launch/train.py) and elastic training (launch/elastic.py).

    backend = start_backend(plan)                 # Horovod or one process, on the plan's device
    data = open_input(plan, log=log)              # before the plan settles: it counts the data
    parts = build_parts(plan, data=data, backend=backend, cleanup=cleanup)
    trainer = build_trainer(plan, parts, backend=backend, log=log)

Nothing here reads a flag or runs a collective (start_backend starts Horovod, whose start is
the workers' rendezvous); what depends on the worker count comes from
`plan.for_workers(n)`.
"""
import dataclasses
import os
from typing import Optional

import tensorflow as tf

import engine
import input as inputs
import nets
from engine import distributed, ema, files, optimizers, schedules, watchdog
from launch import devices, hardware, onednn, run_dir
from launch.errors import CommandError
from launch.plan import RunPlan


@dataclasses.dataclass(frozen=True)
class Parts:
    """What a run builds once per process: the input module, the net, the train step (which owns
    the optimizer and the weight average) and the stall watchdog (None: --stall_timeout=0)."""
    data: object
    net: object
    step: engine.TrainStep
    watchdog: Optional[watchdog.Watchdog]


def start_backend(planned: RunPlan):
    """Horovod (or one process) on the device the plan asks for, its thread pools sized first
    (TensorFlow fixes them when its first op runs)."""
    machine = planned.machine
    hardware.apply_thread_pools(machine.pools)
    devices.horovod_timeline(machine.horovod_timeline)
    devices.horovod_stall_defaults(machine.stall_timeout)
    if machine.run_on_hpu:
        devices.load_habana()
    # Under the elastic launcher, Horovod from the first worker on.
    horovod = machine.use_hpu_strategy or distributed.launched_elastic()
    backend = distributed.create(use_horovod=True if horovod else None,
                                 fp16_allreduce=machine.fp16_allreduce)
    devices.pin_gpu(backend.local_rank)
    return backend


def open_input(plan: RunPlan, *, log):
    """The plan's input module, with its own tf.data pool when the plan sizes one; with
    --skip_corrupt, its bad examples found now (one scan) and said in one line per split."""
    spec = plan.input
    options = dataclasses.replace(spec.options,
                                  private_threads=plan.machine.pools.dataset_private)
    if spec.name == "synthetic":
        data = inputs.build("synthetic", options=options, num_classes=spec.num_classes or 1000,
                            mixing=spec.mixing)
    else:
        data = inputs.build(spec.name, options=options, dataset_dir=spec.dataset_dir,
                            train_subset=spec.train_subset, val_subset=spec.val_subset,
                            num_classes=spec.num_classes, mixing=spec.mixing)
    for split in ("train", "validation") if options.skip_corrupt else ():
        bad = data.bad_examples(split)
        if bad:
            path, index, reason = bad[0]
            log(f"skipping {len(bad)} bad {split} example(s), first {path} record {index}: "
                f"{reason}")
    return data


def check_layout(plan: RunPlan) -> None:
    """Refuses NCHW where this machine cannot run it, before anything is built."""
    problem = None if plan.machine.data_format == "NHWC" else hardware.nchw_problem()
    if problem:
        raise CommandError(f"--data_format=NCHW: {problem}; NCHW is for GPUs, use "
                           f"--data_format=NHWC here")


def write_run_files(plan: RunPlan, *, bf16: hardware.Bf16Support) -> None:
    """flags.txt (what reproduces the run) and machine.json (what its device offered); the
    chief's."""
    files.write_whole(os.path.join(plan.model_dir, "flags.txt"), plan.flagfile())
    decision = onednn.settled()
    run_dir.write_machine(plan.model_dir, {
        "device": bf16.device, "bf16_native": bf16.native, "bf16_missing": bf16.missing,
        "onednn": hardware.onednn_enabled(),
        "onednn_choice": dataclasses.asdict(decision) if decision else None,
        "dtype": plan.dtype, "threads": dataclasses.asdict(plan.machine.pools)})


def build_parts(plan: RunPlan, *, data, backend, cleanup) -> Parts:
    """The net, train step and watchdog of a settled plan around `data`; what must be released
    goes on `cleanup`."""
    if plan.machine.deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(plan.seed)
    net = build_net(plan)
    step = build_train_step(plan, net=net, backend=backend)
    stall_watchdog = None
    if plan.machine.stall_timeout:
        stall_watchdog = watchdog.Watchdog(timeout=plan.machine.stall_timeout,
                                           long_timeout=plan.machine.stall_timeout_long,
                                           rank=backend.rank)
        cleanup.callback(stall_watchdog.stop)
    return Parts(data=data, net=net, step=step, watchdog=stall_watchdog)


def build_net(plan: RunPlan):
    """The plan's net, initialized from its init checkpoint when it has one."""
    net = nets.build(plan.net.model, **plan.net_options())
    path, skip_head = plan.net.init_checkpoint, plan.net.init_skip_head
    if path and path.endswith(".h5"):
        nets.load_keras_weights(net, path, skip_head=skip_head)
    elif path:
        try:
            engine.restore_net(net, path, skip_head=skip_head)
        except engine.HeadMismatch as e:
            raise CommandError(f"--init_checkpoint: {e}; add --init_skip_head to fine-tune "
                               f"with a new classifier") from None
    return net


def build_train_step(plan: RunPlan, *, net, backend) -> engine.TrainStep:
    """The train step, which owns the net, the optimizer and the weight average."""
    spec = plan.step
    lr_fn = schedules.build(spec.lr_schedule, initial_lr=spec.initial_lr,
                            steps_per_epoch=plan.steps_per_epoch,
                            warmup_epochs=spec.warmup_epochs, total_epochs=plan.epochs)
    # LARS decays inside its update; the others by an L2 penalty in the loss or decoupled.
    loss_weight_decay = 0.0 if spec.optimizer == "lars" else spec.weight_decay
    return engine.TrainStep(
        net=net, optimizer=build_optimizer(plan, net), backend=backend, lr_fn=lr_fn,
        weight_decay=loss_weight_decay, weight_decay_mode=spec.weight_decay_mode,
        label_smoothing=spec.label_smoothing, micro_batches=plan.micro_batches,
        ema=ema.WeightEma(net, spec.ema_decay) if spec.ema_decay else None,
        jit_compile=spec.jit_compile, seed=plan.seed, clip_grad_norm=spec.clip_grad_norm)


def build_optimizer(plan: RunPlan, net):
    spec = plan.step
    if spec.optimizer == "lars":
        roles = net.variables_by_role()
        return optimizers.build("lars", momentum=spec.momentum, eta=spec.lars_eta,
                                epsilon=spec.lars_epsilon, weight_decay=spec.weight_decay,
                                excluded=roles["normalization"] + roles["biases"])
    decoupled = spec.weight_decay if spec.weight_decay_mode == "decoupled" else 0.0
    options = {"momentum": spec.momentum} if spec.optimizer == "sgd" else {}
    return optimizers.build(spec.optimizer, decoupled_weight_decay=decoupled, **options)


def build_trainer(plan: RunPlan, parts: Parts, *, backend, log) -> engine.Trainer:
    """The Trainer around the parts, for the workers there now (Trainer.resize follows a
    change of them)."""
    return engine.Trainer(train_step=parts.step, data=parts.data, backend=backend,
                          config=plan.loop, watchdog=parts.watchdog,
                          tensor_dumps=tensor_dumps(plan, backend.rank), log=log)


def tensor_dumps(plan: RunPlan, rank: int):
    """The --dump_tensors window of this worker (every worker has it, rank 0 alone writes unless
    --dump_all_ranks), or None."""
    spec = plan.dumps
    if spec is None:
        return None
    from engine.tensor_dumps import TensorDumps
    root = os.path.join(spec.root, f"rank_{rank}") if spec.all_ranks else spec.root
    return TensorDumps(root, window=spec.window, mode=spec.mode, buffer_size=spec.buffer_size,
                       writes=rank == 0 or spec.all_ranks)


def describe(plan: RunPlan, parts: Parts, *, backend) -> str:
    """The run's first line: the net, dtype, workers, slots, epochs, seed, threads, oneDNN."""
    picked = f"{plan.dtype} (--dtype=auto)" if plan.dtype_asked == "auto" else plan.dtype
    pools = plan.machine.pools.describe()
    decision = onednn.settled()
    return (f"{plan.net.model} ({nets.parameter_count(parts.net):,} parameters), {picked}, "
            f"{backend.name}, global batch {plan.batch_size} in {plan.slots} micro-batch slot"
            f"{'s' * (plan.slots > 1)} ({plan.micro_batches} per worker), "
            f"{plan.steps_per_epoch} steps/epoch, {plan.epochs} epochs, seed {plan.seed}"
            + (f"; {pools}" if pools else "")
            + (f"; {decision.describe()}" if decision else ""))
