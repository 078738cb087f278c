"""Benchmarks, printed as JSON. Speed and memory are measured here, never asserted in tests.

    python -m launch.benchmark --mode=memory --model=densenet121 --batch_size=64 --image_size=224

memory: peak resident memory and step time of one forward + backward pass (the gradient step,
    without an optimizer) with and without `recompute`, each variant in a fresh process so
    that peaks do not mix; the variants alternate over --repeats rounds and medians are reported.
train: training images/s of the engine (our net, fused optimizer, hand-written step, with the
    recipe's L2 weight decay 1e-4 and the finite-gradient check, work the reference skips)
    against keras.applications' DenseNet trained with model.fit (tests/benchmarks/keras_fit.py:
    Keras stays out of launch/) on the same synthetic batch, each in its own process, alternating
    over --repeats rounds; img/s as mean +- 1.96 sigma over timed steps after warm-up, and the
    median ratio. --dtype=both measures fp32 and bf16.
conv_floor: a ceiling for any training step built on TF's kernels: every convolution of one
    training step (forward, backprop-filter, backprop-input; read from the traced graph of the
    net) timed alone, one shape at a time, and summed. Everything else (batch norm, ReLU,
    concatenation, the update) only adds to it, so batch_size / floor_seconds is the img/s
    that no engine, ours or Keras, can pass on this machine with these kernels.
loop_overhead: the loop alone, on a net whose step takes milliseconds: engine.Trainer against a
    bare loop of the same compiled step (see launch/loop_benchmark.py).
input: images/s of the imagenet input module's training pipeline against a bare tf.data loop of
    read -> parse -> fused decode-and-crop -> resize over the same files, and of the pipeline
    with each augmentation (RandAugment m9-n2, + random erasing 0.25, + mixup 0.2 / CutMix
    1.0), alternating, medians, each with its ratio to the plain pipeline.
    Uses --dataset_dir, or writes --input_images procedurally drawn JPEGs of 320 x 320 first.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

from launch import loop_benchmark
from launch.train_flags import COMPUTE_DTYPES

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "memory", ["memory", "memory_worker", "input", "train",
                                     "train_worker", "conv_floor", "loop_overhead",
                                     "loop_overhead_worker"],
                  "What to measure (the *_worker modes are one variant, run by the others).")
flags.DEFINE_string("model", "densenet121", "Model name, as nets.build takes it.")
flags.DEFINE_integer("batch_size", None, "Images per step (default: 64 for memory, 32 "
                     "otherwise, the figures the issues name).", lower_bound=1)
flags.DEFINE_integer("image_size", 224, "Height and width of the images.", lower_bound=32)
flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16", "both"], "Compute dtype (train: both).")
flags.DEFINE_integer("steps", 3, "Timed steps after warm-up.", lower_bound=2)
flags.DEFINE_integer("repeats", 3, "Rounds of the two variants (medians are reported).",
                     lower_bound=1)
flags.DEFINE_boolean("recompute", False, "memory_worker: build the net with recompute.")
flags.DEFINE_string("output", None, "Also write the JSON result to this file.")
flags.DEFINE_string("dataset_dir", None, "input: recipe-format TFRecords to read.")
flags.DEFINE_integer("input_images", 1024, "input: images to generate without --dataset_dir.",
                     lower_bound=64)
flags.DEFINE_integer("steps_per_loop", 1, "loop_overhead_worker: steps per call.",
                     lower_bound=1)
flags.DEFINE_boolean("horovod", True, "loop_overhead: also the horovodrun -np 2 row.")
flags.DEFINE_integer("input_batches", 30, "input: timed batches per measurement.", lower_bound=5)

KERAS_FIT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                         "benchmarks", "keras_fit.py")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def memory_worker():
    """One variant in this process: prints {"peak_rss_mb", "step_seconds", ...} as JSON."""
    import tensorflow as tf

    import nets

    net = nets.build(FLAGS.model, recompute=FLAGS.recompute,
                     compute_dtype=COMPUTE_DTYPES[FLAGS.dtype])
    images = tf.random.stateless_uniform([FLAGS.batch_size, FLAGS.image_size,
                                          FLAGS.image_size, 3], (1, 2), -1.0, 1.0)
    labels = tf.random.stateless_uniform([FLAGS.batch_size], (3, 4), 0, net.num_classes, tf.int32)
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
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        loss, _ = gradient_step()
        float(loss)
        times.append(time.perf_counter() - start)
    print(json.dumps({"recompute": FLAGS.recompute, "peak_rss_mb": round(peak_rss_mb(), 1),
                      "rss_before_step_mb": round(rss_before, 1),
                      "step_seconds": round(statistics.median(times), 3)}))


def memory():
    results = {False: [], True: []}
    for _ in range(FLAGS.repeats):
        for recompute in (False, True):
            cmd = [sys.executable, "-m", "launch.benchmark", "--mode=memory_worker",
                   f"--model={FLAGS.model}", f"--batch_size={FLAGS.batch_size}",
                   f"--image_size={FLAGS.image_size}", f"--dtype={FLAGS.dtype}",
                   f"--steps={FLAGS.steps}", f"--recompute={recompute}"]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            results[recompute].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"memory: recompute={recompute}: {results[recompute][-1]}", file=sys.stderr)

    def median(recompute, key):
        return statistics.median(r[key] for r in results[recompute])

    summary = {
        "mode": "memory", "model": FLAGS.model, "batch_size": FLAGS.batch_size,
        "image_size": FLAGS.image_size, "dtype": FLAGS.dtype, "repeats": FLAGS.repeats,
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


def input_benchmark():
    import tempfile

    import tensorflow as tf

    import input as inputs
    from input import augment, demo_data, mixing, preprocessing, records

    data_dir = FLAGS.dataset_dir
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="input-bench-")
        per_class = FLAGS.input_images // len(demo_data.CLASS_NAMES)
        demo_data.write_demo_data(data_dir, per_class, 2, size=320, train_shards=8)
    size, batch = FLAGS.image_size, FLAGS.batch_size
    randaugment = augment.RandAugment(magnitude=9, num_layers=2)
    variants = {  # row -> the input module's augmentation options
        "plain": {},
        "randaugment_m9_n2": dict(randaugment=randaugment),
        "randaugment_erasing": dict(randaugment=randaugment, random_erasing=0.25),
        "randaugment_erasing_mix": dict(
            randaugment=randaugment, random_erasing=0.25,
            mixing=mixing.Mixing(mixup_alpha=0.2, cutmix_alpha=1.0))}
    modules = {name: inputs.build("imagenet", dataset_dir=data_dir, image_size=size, **options)
               for name, options in variants.items()}
    files = records.list_shards(data_dir, "train")

    def bare():
        def one(serialized):
            encoded = tf.io.parse_single_example(serialized, records.FEATURES)["image/encoded"]
            shape = tf.io.extract_jpeg_shape(encoded)
            begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=(1, 2), max_attempts=100,
                use_image_if_no_bounding_boxes=True, **preprocessing.CROP_SETTINGS["vendor"])
            image = tf.image.decode_and_crop_jpeg(
                encoded, tf.stack([begin[0], begin[1], crop[0], crop[1]]), channels=3,
                dct_method=preprocessing.DCT_METHOD)
            return tf.image.resize(image, [size, size])
        return (tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).repeat()
                .map(one, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)
                .prefetch(tf.data.AUTOTUNE))

    def rate(dataset):
        iterator = iter(dataset)
        for _ in range(5):  # warm-up: thread pools, autotuning, page cache
            next(iterator)
        start = time.perf_counter()
        for _ in range(FLAGS.input_batches):
            next(iterator)
        return FLAGS.input_batches * batch / (time.perf_counter() - start)

    rates = {name: [] for name in [*variants, "bare_loop"]}
    for _ in range(FLAGS.repeats):
        for name, module in modules.items():
            rates[name].append(rate(module.train_dataset(batch, seed=1)))
        rates["bare_loop"].append(rate(bare()))
        print("input: " + ", ".join(f"{name} {r[-1]:.1f}" for name, r in rates.items())
              + " img/s", file=sys.stderr)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    return {"mode": "input", "image_size": size, "batch_size": batch, "repeats": FLAGS.repeats,
            "dataset_dir": data_dir,
            "images_per_sec": {name: round(m, 1) for name, m in medians.items()},
            "ratio_to_plain": {name: round(m / medians["plain"], 3)
                               for name, m in medians.items()},
            "plain_to_bare_loop": round(medians["plain"] / medians["bare_loop"], 3)}


def train_worker():
    """Our engine's train step, timed per step: prints JSON."""
    import tensorflow as tf

    import nets
    from engine import TrainStep, distributed, optimizers

    net = nets.build(FLAGS.model, compute_dtype=COMPUTE_DTYPES[FLAGS.dtype])
    optimizer = optimizers.build("sgd")
    step = TrainStep(net=net, optimizer=optimizer, backend=distributed.SingleProcess(),
                     lr_fn=lambda s: tf.constant(0.01), weight_decay=1e-4)
    optimizer.build(step.variables)
    images = tf.random.uniform([FLAGS.batch_size, FLAGS.image_size, FLAGS.image_size, 3], -1, 1)
    labels = tf.random.uniform([FLAGS.batch_size], 0, 1000, tf.int32)
    rates = []
    for i in range(3 + FLAGS.steps):
        start = time.perf_counter()
        step(images, labels)
        step.metrics.local_examples()  # waits for the step
        if i >= 3:
            rates.append(FLAGS.batch_size / (time.perf_counter() - start))
    print(json.dumps({"impl": "engine", "tf": tf.__version__, "dtype": FLAGS.dtype,
                      "images_per_sec": statistics.mean(rates),
                      "ci95": 1.96 * statistics.stdev(rates) if len(rates) > 1 else 0.0}))


def conv_floor():
    import tensorflow as tf

    import nets

    dtype = tf.as_dtype(COMPUTE_DTYPES[FLAGS.dtype])
    size, batch = FLAGS.image_size, FLAGS.batch_size
    net = nets.build(FLAGS.model, compute_dtype=COMPUTE_DTYPES[FLAGS.dtype])
    graph = tf.function(lambda x: net(x, training=True)).get_concrete_function(
        tf.TensorSpec([batch, size, size, 3], tf.float32)).graph
    convs = {}  # (input shape, kernel shape, strides, padding) -> count
    for op in graph.get_operations():
        if op.type == "Conv2D":
            key = (tuple(op.inputs[0].shape), tuple(op.inputs[1].shape),
                   tuple(op.get_attr("strides")), op.get_attr("padding").decode())
            convs[key] = convs.get(key, 0) + 1

    def median_seconds(fn, *args):
        fn(*args)  # trace + warm-up
        times = []
        for _ in range(FLAGS.steps):
            start = time.perf_counter()
            fn(*args).numpy()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    totals = {"forward": 0.0, "backprop_filter": 0.0, "backprop_input": 0.0}
    for (x_shape, k_shape, strides, padding), count in convs.items():
        x = tf.cast(tf.random.uniform(x_shape, -1, 1), dtype)
        kernel = tf.cast(tf.random.uniform(k_shape, -0.1, 0.1), dtype)
        grad = tf.ones_like(tf.nn.conv2d(x, kernel, strides, padding))
        forward = tf.function(lambda x, k: tf.nn.conv2d(x, k, strides, padding))
        by_filter = tf.function(lambda x, g: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=k_shape, out_backprop=g, strides=strides, padding=padding))
        by_input = tf.function(lambda k, g: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=x_shape, filter=k, out_backprop=g, strides=strides, padding=padding))
        totals["forward"] += count * median_seconds(forward, x, kernel)
        totals["backprop_filter"] += count * median_seconds(by_filter, x, grad)
        if x_shape[-1] != 3:  # the images need no gradient
            totals["backprop_input"] += count * median_seconds(by_input, kernel, grad)
    floor = sum(totals.values())
    return {"mode": "conv_floor", "model": FLAGS.model, "batch_size": batch, "image_size": size,
            "dtype": FLAGS.dtype, "tf": tf.__version__, "distinct_convs": len(convs),
            "convs": sum(convs.values()),
            "seconds_per_step": {k: round(v, 3) for k, v in totals.items()},
            "floor_seconds_per_step": round(floor, 3),
            "ceiling_images_per_sec": round(batch / floor, 2)}


def train_benchmark():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dtypes = ["fp32", "bf16"] if FLAGS.dtype == "both" else [FLAGS.dtype]
    common = [f"--model={FLAGS.model}", f"--batch_size={FLAGS.batch_size}",
              f"--image_size={FLAGS.image_size}", f"--steps={FLAGS.steps}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=here)
    results = {}
    for _ in range(FLAGS.repeats):
        for dtype in dtypes:
            for impl, cmd in (
                    ("engine", [sys.executable, "-m", "launch.benchmark", "--mode=train_worker",
                                f"--dtype={dtype}", *common]),
                    ("keras_fit", [sys.executable, KERAS_FIT, f"--dtype={dtype}", *common])):
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=here)
                if out.returncode != 0:
                    raise RuntimeError(f"{impl} {dtype} failed:\n{out.stderr[-2000:]}")
                record = json.loads(out.stdout.strip().splitlines()[-1])
                results.setdefault((dtype, impl), []).append(record)
                print(f"train: {dtype} {record['impl']}: {record['images_per_sec']:.2f} "
                      f"+- {record['ci95']:.2f} img/s", file=sys.stderr)
    summary = {"mode": "train", "model": FLAGS.model, "batch_size": FLAGS.batch_size,
               "image_size": FLAGS.image_size, "steps": FLAGS.steps, "repeats": FLAGS.repeats}
    for dtype in dtypes:
        engine = [r["images_per_sec"] for r in results[(dtype, "engine")]]
        keras = [r["images_per_sec"] for r in results[(dtype, "keras_fit")]]
        ratios = [a / b for a, b in zip(engine, keras)]
        summary[dtype] = {"engine_images_per_sec": round(statistics.median(engine), 2),
                          "keras_fit_images_per_sec": round(statistics.median(keras), 2),
                          "keras": results[(dtype, "keras_fit")][0]["impl"],
                          "tf": results[(dtype, "engine")][0]["tf"],
                          "engine_ci95": round(results[(dtype, "engine")][0]["ci95"], 2),
                          "ratio_median": round(statistics.median(ratios), 3)}
    return summary


def main(argv):
    del argv
    if FLAGS.dtype == "both" and FLAGS.mode != "train":
        raise app.UsageError("--dtype=both is for --mode=train; run other modes once per dtype")
    if FLAGS.mode == "train" and not os.path.exists(KERAS_FIT):
        raise app.UsageError(f"--mode=train compares with Keras' fit, run by {KERAS_FIT}, "
                             f"which only a source checkout has (tests/ is not installed)")
    if FLAGS.batch_size is None:
        FLAGS.batch_size = 64 if FLAGS.mode.startswith("memory") else 32
    if FLAGS.mode in ("memory_worker", "train_worker"):
        (memory_worker if FLAGS.mode == "memory_worker" else train_worker)()
        return
    if FLAGS.mode == "loop_overhead_worker":
        loop_benchmark.worker(FLAGS.steps_per_loop, FLAGS.steps, FLAGS.repeats)
        return
    summary = {"memory": memory, "input": input_benchmark, "train": train_benchmark,
               "conv_floor": conv_floor,
               "loop_overhead": lambda: loop_benchmark.run(steps=FLAGS.steps,
                                                           rounds=FLAGS.repeats,
                                                           horovod=FLAGS.horovod)}[FLAGS.mode]()
    text = json.dumps(summary, indent=2)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
