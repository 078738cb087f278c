"""memory: peak resident memory and step time of one forward + backward pass (the gradient step,
without an optimizer) with and without `recompute`, each variant in a fresh process so that
peaks do not mix; the variants alternate over `repeats` rounds and medians are reported."""
import resource
import statistics
import sys
import time

from launch.benchmarks import processes
from launch.plan import COMPUTE_DTYPES


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def worker(*, model, batch_size, image_size, dtype, steps, recompute):
    """One variant in this process: {"peak_rss_mb", "step_seconds", ...}."""
    import tensorflow as tf

    import nets

    net = nets.build(model, recompute=recompute, compute_dtype=COMPUTE_DTYPES[dtype])
    images = tf.random.stateless_uniform([batch_size, image_size, image_size, 3], (1, 2),
                                         -1.0, 1.0)
    labels = tf.random.stateless_uniform([batch_size], (3, 4), 0, net.num_classes, tf.int32)
    variables = net.trainable_variables

    @tf.function
    def gradient_step():
        with tf.GradientTape() as tape:
            logits = net(images, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        grads = tape.gradient(loss, variables)
        return loss, tf.add_n([tf.reduce_sum(g) for g in grads])

    rss_before = peak_rss_mb()
    gradient_step()  # trace + warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss, _ = gradient_step()
        float(loss)
        times.append(time.perf_counter() - start)
    return {"recompute": recompute, "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_before_step_mb": round(rss_before, 1),
            "step_seconds": round(statistics.median(times), 3)}


def run(*, model, batch_size, image_size, dtype, steps, repeats):
    results = {False: [], True: []}
    for _ in range(repeats):
        for recompute in (False, True):
            command = processes.worker_command(
                "memory", model=model, batch_size=batch_size, image_size=image_size,
                dtype=dtype, steps=steps, recompute=recompute)
            results[recompute].append(processes.last_json(command, f"recompute={recompute}"))
            print(f"memory: recompute={recompute}: {results[recompute][-1]}", file=sys.stderr)

    def median(recompute, key):
        return statistics.median(r[key] for r in results[recompute])

    summary = {
        "mode": "memory", "model": model, "batch_size": batch_size, "image_size": image_size,
        "dtype": dtype, "repeats": repeats,
        "plain": {"peak_rss_mb": median(False, "peak_rss_mb"),
                  "step_seconds": median(False, "step_seconds")},
        "recompute": {"peak_rss_mb": median(True, "peak_rss_mb"),
                      "step_seconds": median(True, "step_seconds")},
    }
    summary["peak_memory_ratio"] = round(summary["recompute"]["peak_rss_mb"]
                                         / summary["plain"]["peak_rss_mb"], 3)
    summary["step_time_ratio"] = round(summary["recompute"]["step_seconds"]
                                       / summary["plain"]["step_seconds"], 3)
    return summary
