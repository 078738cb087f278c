"""loop_overhead (`python -m launch.benchmark --mode=loop_overhead`): what the loop itself costs.

A tiny DenseNet (one block of two layers, 32 px, batch 4) whose step takes milliseconds, so
that any host work between steps shows. Each row trains `steps` steps with engine.Trainer (a
fresh net each round), then runs the same compiled step in a bare `for` loop in the same
process (no metrics read, no checks, no logging) and reports steps/s of both, and their ratio.
The Trainer's rate is its own images/s between boundaries after the first log interval (so
tracing is left out), which it times after the device has finished. Rows: default flags
(steps per call fitted by engine.hooks.StopChecks; the bare loop then runs 50 per call);
steps_per_loop=1 (the old default); steps_per_loop=50; and under `horovodrun -np 2` (rank 0
reports) the default with each worker's thread pools sized to its share of the cores (what
launch.train does), the default with TensorFlow's own sizing, and steps_per_loop=50.
`default_vs_50` (and `horovodrun_np2_default_vs_50`) is measured paired: one process trains the
default and steps_per_loop=50 alternately, round after round (the order swapped each round), and
reports the median of the rounds' ratios, so that the machine's drift between processes (which
moves the separate rows by several percent) cancels.
"""
import os
import statistics
import sys
import tempfile
import time

from launch.benchmarks import processes

BATCH, IMAGE_SIZE = 4, 32


def _build(steps_per_loop, steps, model_dir):
    import tensorflow as tf

    import input as inputs
    import nets
    from engine import TrainConfig, Trainer, TrainStep, distributed, optimizers

    backend = distributed.create()
    net = nets.build("densenet", num_classes=10, blocks=(2,), growth_rate=4, stem_filters=8)
    optimizer = optimizers.build("sgd")
    step = TrainStep(net=net, optimizer=optimizer, backend=backend,
                     lr_fn=lambda s: tf.constant(0.01))
    data = inputs.build("synthetic", image_size=IMAGE_SIZE, num_classes=10,
                        num_train_examples=10**6, num_val_examples=4)
    # The default log interval (100) once there are enough steps for several intervals: the
    # Trainer's rate leaves the first one (tracing) out.
    config = TrainConfig(model_dir=model_dir, batch_size=BATCH * backend.size, epochs=1,
                         steps_per_epoch=steps, validation_steps=0,
                         log_steps=min(100, max(1, steps // 10)), steps_per_loop=steps_per_loop)
    trainer = Trainer(data=data, backend=backend,
                      train_step=step, config=config, log=lambda *a, **k: None)
    return trainer, step, data, backend


def bare_rate(step, data, backend, steps_per_loop, steps):
    """Steps/s of the same compiled step called in a plain loop, synced once at the end."""
    import tensorflow as tf
    steps_per_loop = steps_per_loop or 50
    iterator = iter(data.train_dataset(BATCH, worker=backend.rank,
                                       workers=backend.size))
    calls = max(1, steps // steps_per_loop)
    start = time.perf_counter()
    for _ in range(calls):
        if steps_per_loop == 1:
            step(*next(iterator))
        else:
            step.loop(iterator, tf.constant(steps_per_loop))
    step.metrics.local_examples()  # waits for the device
    return calls * steps_per_loop / (time.perf_counter() - start)


def worker(*, steps_per_loop, steps, rounds, threads_per_worker=True):
    """One row in this process: {"trainer": [...], "bare": [...]} steps/s per round (printed by
    rank 0 only). `threads_per_worker`: size the thread pools as launch.train does."""
    if threads_per_worker:
        from launch import hardware
        hardware.apply_thread_pools(hardware.thread_pools())
    trainer_rates, bare_rates = [], []
    for round_ in range(rounds + 1):  # round 0 warms the process up (thread pools, caches)
        with tempfile.TemporaryDirectory() as model_dir:
            trainer, step, data, backend = _build(steps_per_loop, steps, model_dir)
            summary = trainer.train()
            bare = bare_rate(step, data, backend, steps_per_loop, steps)
            if round_:
                trainer_rates.append(summary["images_per_sec"] / (BATCH * backend.size))
                bare_rates.append(bare)
    return {"trainer": trainer_rates, "bare": bare_rates} if backend.is_chief else None


def paired_worker(*, steps, rounds, threads_per_worker=True):
    """Trainer steps/s of the default steps per call and of steps_per_loop=50, trained
    alternately in this process: {"default": [...], "fifty": [...]} per round (rank 0)."""
    if threads_per_worker:
        from launch import hardware
        hardware.apply_thread_pools(hardware.thread_pools())
    rates = {None: [], 50: []}
    for round_ in range(rounds + 1):  # round 0 warms the process up
        order = (None, 50) if round_ % 2 else (50, None)
        for steps_per_loop in order:
            with tempfile.TemporaryDirectory() as model_dir:
                trainer, _, _, backend = _build(steps_per_loop, steps, model_dir)
                summary = trainer.train()
            if round_:
                rates[steps_per_loop].append(summary["images_per_sec"] / (BATCH * backend.size))
    return {"default": rates[None], "fifty": rates[50]} if backend.is_chief else None


def _paired(name, command):
    rates = processes.last_json(command, f"loop_overhead pair {name}")
    ratios = [d / f for d, f in zip(rates["default"], rates["fifty"])]
    print(f"loop_overhead: {name}: default / steps_per_loop=50 per round "
          f"{[round(r, 3) for r in ratios]}", file=sys.stderr)
    return round(statistics.median(ratios), 3)


def _row(name, command):
    rates = processes.last_json(command, f"loop_overhead row {name}")
    ratios = [t / b for t, b in zip(rates["trainer"], rates["bare"])]
    row = {"trainer_steps_per_sec": round(statistics.median(rates["trainer"]), 1),
           "bare_loop_steps_per_sec": round(statistics.median(rates["bare"]), 1),
           "ratio_median": round(statistics.median(ratios), 3),
           "ratios": [round(r, 3) for r in ratios]}
    print(f"loop_overhead: {name}: {row}", file=sys.stderr)
    return row


def run(*, steps, rounds, horovod=True):
    def command(steps_per_loop, threads_per_worker=True):
        return processes.worker_command("loop_overhead", steps_per_loop=steps_per_loop,
                                        steps=steps, rounds=rounds,
                                        threads_per_worker=threads_per_worker)

    pair = processes.worker_command("loop_overhead_paired", steps=steps, rounds=rounds)
    rows = {"default": _row("default", command(None)),
            "steps_per_loop_1": _row("steps_per_loop=1", command(1)),
            "steps_per_loop_50": _row("steps_per_loop=50", command(50))}
    rows["default_vs_50"] = _paired("default vs 50", pair)
    if horovod:
        horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
        np2 = [horovodrun, "-np", "2", "-H", "localhost:2", "--gloo"]
        rows["horovodrun_np2"] = _row("horovodrun -np 2", [*np2, *command(None)])
        rows["horovodrun_np2_tf_threads"] = _row(
            "horovodrun -np 2, TensorFlow's own thread pools",
            [*np2, *command(None, threads_per_worker=False)])
        rows["horovodrun_np2_steps_per_loop_50"] = _row(
            "horovodrun -np 2, steps_per_loop=50", [*np2, *command(50)])
        rows["horovodrun_np2_default_vs_50"] = _paired("horovodrun -np 2, default vs 50",
                                                       [*np2, *pair])
    return {"mode": "loop_overhead", "model": "densenet blocks=(2,) growth 4 stem 8",
            "image_size": IMAGE_SIZE, "batch_per_worker": BATCH, "steps": steps,
            "rounds": rounds, **rows}
