"""train: training images/s of the engine's train step (our net, fused optimizer, hand-written
step, with the recipe's L2 weight decay 1e-4 and the finite-gradient check) on one synthetic
batch, each round in a fresh process; img/s as mean +- 1.96 sigma over timed steps after
warm-up, medians over rounds; beside it the ceiling that the step's convolutions leave
(conv_floor) and the engine's share of it. With `--keras_fit` (a source checkout), also
keras.applications' DenseNet trained with model.fit, alternated with the engine each round.

With `horovod_workers=N` (N > 1), also N workers under `horovodrun -np N` on this host (each the
given batch, the gradients all-reduced; global images/s from rank 0's step times), alternating
each round between thread pools sized per worker (launch.train's default) and TensorFlow's own
sizing (every worker sized to every core)."""
import os
import statistics
import sys
import time

from launch.benchmarks import processes
from launch.plan import COMPUTE_DTYPES

WARMUP_STEPS = 3


def worker(*, model, batch_size, image_size, dtype, steps, threads_per_worker=None,
           profile_dir=None):
    """The engine's train step, timed per step in this process (under a launcher, one of its
    workers: rank 0 reports, images/s over all workers). `threads_per_worker`: True sizes the
    thread pools as launch.train does, False leaves TensorFlow's own sizing. `profile_dir`: the
    timed steps are also captured by TensorFlow's profiler there (tests/benchmarks/op_types.py
    compares the ops of such captures)."""
    import tensorflow as tf

    import nets
    from engine import TrainStep, distributed, optimizers
    from launch import hardware

    if threads_per_worker:
        hardware.apply_thread_pools(hardware.thread_pools())
    backend = distributed.create()
    net = nets.build(model, compute_dtype=COMPUTE_DTYPES[dtype])
    step = TrainStep(net=net, optimizer=optimizers.build("sgd"),
                     backend=backend, lr_fn=lambda s: tf.constant(0.01),
                     weight_decay=1e-4)
    step.build()
    images = tf.random.uniform([batch_size, image_size, image_size, 3], -1, 1)
    labels = tf.random.uniform([batch_size], 0, 1000, tf.int32)
    rates = []
    for i in range(WARMUP_STEPS + steps):
        if i == WARMUP_STEPS and profile_dir:
            tf.profiler.experimental.start(profile_dir)
        start = time.perf_counter()
        step(images, labels)
        step.metrics.local_examples()  # waits for the step
        if i >= WARMUP_STEPS:
            rates.append(batch_size * backend.size / (time.perf_counter() - start))
    if profile_dir:
        tf.profiler.experimental.stop()
    if not backend.is_chief:
        return None
    return {"impl": "engine", "tf": tf.__version__, "dtype": dtype,
            "images_per_sec": statistics.mean(rates),
            "ci95": 1.96 * statistics.stdev(rates) if len(rates) > 1 else 0.0}


def run(*, model, batch_size, image_size, dtypes, steps, repeats, horovod_workers=0,
        keras_fit=None):
    """Each round: the engine per dtype, and with `keras_fit` (the path of
    tests/benchmarks/keras_fit.py: Keras stays out of launch/) keras.applications' DenseNet with
    model.fit right after it; then once per dtype the convolutions' floor (conv_floor), so that
    the summary puts the engine's rate beside Keras' and beside the ceiling of any engine."""
    results = {(dtype, impl): [] for dtype in dtypes for impl in ("engine", "keras_fit")}
    pools = {"threads_per_worker": [], "tf_threads": []}
    shape = dict(model=model, batch_size=batch_size, image_size=image_size, steps=steps)
    for _ in range(repeats):
        for dtype in dtypes:
            commands = [("engine", processes.worker_command("train", dtype=dtype, **shape))]
            if keras_fit:
                commands.append(("keras_fit", [sys.executable, keras_fit, f"--dtype={dtype}",
                                               *(f"--{k}={v}" for k, v in shape.items())]))
            for impl, command in commands:
                record = processes.last_json(command, f"{impl} {dtype}")
                results[(dtype, impl)].append(record)
                print(f"train: {dtype} {record['impl']}: {record['images_per_sec']:.2f} "
                      f"+- {record['ci95']:.2f} img/s", file=sys.stderr)
        if horovod_workers > 1:
            horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
            for name, per_worker in (("threads_per_worker", True), ("tf_threads", False)):
                record = processes.last_json(
                    [horovodrun, "-np", str(horovod_workers), "-H",
                     f"localhost:{horovod_workers}", "--gloo", *processes.worker_command(
                         "train", model=model, batch_size=batch_size, image_size=image_size,
                         dtype=dtypes[0], steps=steps, threads_per_worker=per_worker)],
                    f"horovodrun -np {horovod_workers} {name}")
                pools[name].append(record["images_per_sec"])
                print(f"train: horovodrun -np {horovod_workers} {dtypes[0]}, {name}: "
                      f"{record['images_per_sec']:.2f} img/s", file=sys.stderr)
    summary = {"mode": "train", "model": model, "batch_size": batch_size,
               "image_size": image_size, "steps": steps, "repeats": repeats}
    for dtype in dtypes:
        engine = [r["images_per_sec"] for r in results[(dtype, "engine")]]
        floor = processes.last_json(processes.worker_command(
            "conv_floor", dtype=dtype, **shape), f"conv_floor {dtype}")
        ceiling = floor["ceiling_images_per_sec"]
        summary[dtype] = {
            "engine_images_per_sec": round(statistics.median(engine), 2),
            "engine_ci95": round(results[(dtype, "engine")][0]["ci95"], 2),
            "tf": results[(dtype, "engine")][0]["tf"],
            "conv_ceiling_images_per_sec": ceiling,
            "engine_to_conv_ceiling": round(statistics.median(engine) / ceiling, 3)}
        if keras_fit:
            keras = [r["images_per_sec"] for r in results[(dtype, "keras_fit")]]
            summary[dtype].update({
                "keras_fit_images_per_sec": round(statistics.median(keras), 2),
                "keras": results[(dtype, "keras_fit")][0]["impl"],
                "engine_to_keras_fit": round(statistics.median(
                    a / b for a, b in zip(engine, keras)), 3),
                "keras_fit_to_conv_ceiling": round(statistics.median(keras) / ceiling, 3)})
    if horovod_workers > 1:
        ratios = [a / b for a, b in zip(pools["threads_per_worker"], pools["tf_threads"])]
        summary[f"horovodrun_np{horovod_workers}_{dtypes[0]}"] = {
            **{f"{name}_images_per_sec": round(statistics.median(rates), 2)
               for name, rates in pools.items()},
            "ratio_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios]}
    return summary
