"""train: training images/s of the engine's train step (our net, fused optimizer, hand-written
step, with the recipe's L2 weight decay 1e-4 and the finite-gradient check) on one synthetic
batch, each round in a fresh process; img/s as mean +- 1.96 sigma over timed steps after
warm-up, medians over rounds. Against Keras' fit: python -m tests.benchmarks.train_vs_keras."""
import statistics
import sys
import time

from launch.benchmarks import processes
from launch.train_flags.objects import COMPUTE_DTYPES

WARMUP_STEPS = 3


def worker(*, model, batch_size, image_size, dtype, steps):
    """The engine's train step, timed per step in this process."""
    import tensorflow as tf

    import nets
    from engine import TrainStep, distributed, optimizers

    net = nets.build(model, compute_dtype=COMPUTE_DTYPES[dtype])
    step = TrainStep(net=net, optimizer=optimizers.build("sgd"),
                     backend=distributed.SingleProcess(), lr_fn=lambda s: tf.constant(0.01),
                     weight_decay=1e-4)
    step.build()
    images = tf.random.uniform([batch_size, image_size, image_size, 3], -1, 1)
    labels = tf.random.uniform([batch_size], 0, 1000, tf.int32)
    rates = []
    for i in range(WARMUP_STEPS + steps):
        start = time.perf_counter()
        step(images, labels)
        step.metrics.local_examples()  # waits for the step
        if i >= WARMUP_STEPS:
            rates.append(batch_size / (time.perf_counter() - start))
    return {"impl": "engine", "tf": tf.__version__, "dtype": dtype,
            "images_per_sec": statistics.mean(rates),
            "ci95": 1.96 * statistics.stdev(rates) if len(rates) > 1 else 0.0}


def run(*, model, batch_size, image_size, dtypes, steps, repeats):
    results = {dtype: [] for dtype in dtypes}
    for _ in range(repeats):
        for dtype in dtypes:
            record = processes.last_json(processes.worker_command(
                "train", model=model, batch_size=batch_size, image_size=image_size,
                dtype=dtype, steps=steps), f"engine {dtype}")
            results[dtype].append(record)
            print(f"train: {dtype} engine: {record['images_per_sec']:.2f} "
                  f"+- {record['ci95']:.2f} img/s", file=sys.stderr)
    summary = {"mode": "train", "model": model, "batch_size": batch_size,
               "image_size": image_size, "steps": steps, "repeats": repeats}
    for dtype, records in results.items():
        summary[dtype] = {
            "engine_images_per_sec": round(statistics.median(r["images_per_sec"]
                                                             for r in records), 2),
            "engine_ci95": round(records[0]["ci95"], 2), "tf": records[0]["tf"]}
    return summary
