"""The reference for `launch.benchmark --mode=train`: keras.applications DenseNet trained with
model.fit on one synthetic batch repeated (Keras lives in tests/ only). Prints JSON.

    python tests/benchmarks/keras_fit.py --model=densenet121 --dtype=fp32 --batch_size=32 --steps=10
"""
import argparse
import json
import statistics
import time

import tensorflow as tf


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--profile_dir", help="also capture the timed steps with TensorFlow's "
                        "profiler here")
    args = parser.parse_args()
    import keras  # the lane's own Keras: 2 on TF 2.15, 3 on TF 2.21
    if args.dtype == "bf16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = getattr(keras.applications, {"densenet121": "DenseNet121", "densenet169":
                                         "DenseNet169", "densenet201": "DenseNet201"}[args.model])(
        weights=None, input_shape=(args.image_size, args.image_size, 3))
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy")
    images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3], -1, 1)
    labels = tf.random.uniform([args.batch_size], 0, 1000, tf.int32)
    data = tf.data.Dataset.from_tensors((images, labels)).repeat()

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == args.warmup and args.profile_dir:
                tf.profiler.experimental.start(args.profile_dir)
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)
            if batch == args.warmup + args.steps - 1 and args.profile_dir:
                tf.profiler.experimental.stop()

    model.fit(data, epochs=1, steps_per_epoch=args.warmup + args.steps, verbose=0,
              callbacks=[Timer()])
    rates = [args.batch_size / t for t in times[args.warmup:]]
    print(json.dumps({"impl": f"keras{keras.__version__.split('.')[0]}_fit",
                      "keras": keras.__version__, "tf": tf.__version__, "dtype": args.dtype,
                      "images_per_sec": statistics.mean(rates),
                      "ci95": 1.96 * statistics.stdev(rates) if len(rates) > 1 else 0.0}))


if __name__ == "__main__":
    main()
