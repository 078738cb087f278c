"""Benchmarks, printed as JSON. Speed and memory are measured here, never asserted in tests.

    python -m launch.benchmark --mode=memory --model=densenet121 --batch_size=64 --image_size=224

Modes (one module each in launch/benchmarks/, whose docstring says what it measures):
memory (recompute against plain: peak memory, step time), train (the engine's training
images/s and its share of the conv_floor ceiling; with --keras_fit, in a source checkout, Keras'
fit beside it), conv_floor (the img/s ceiling that the step's convolutions alone leave),
loop_overhead (the Trainer against a bare loop of the same step), input (the input pipeline
against a bare tf.data loop, and each augmentation's cost), elastic (2 workers in Horovod's
elastic mode against the same run without it: what commits cost), soak (a long run of the tiny
net: resident memory at each epoch end and its slope, what model_dir holds, the step rate at the
start against the end).
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import json
import os

from absl import app, flags

from launch.benchmarks import (
    conv_floor,
    elastic,
    input_rate,
    loop_overhead,
    memory,
    processes,
    soak,
    train,
)

FLAGS = flags.FLAGS
KERAS_FIT = os.path.join(processes.REPO, "tests", "benchmarks", "keras_fit.py")
flags.DEFINE_enum("mode", "memory", ["memory", "input", "train", "conv_floor", "loop_overhead",
                                     "elastic", "soak"], "What to measure.")
flags.DEFINE_string("model", "densenet121", "Model name, as nets.build takes it.")
flags.DEFINE_integer("batch_size", None, "Images per step (default: 64 for memory, 32 "
                     "otherwise, the figures the issues name).", lower_bound=1)
flags.DEFINE_integer("image_size", 224, "Height and width of the images.", lower_bound=32)
flags.DEFINE_enum("dtype", "fp32", ["fp32", "bf16", "both"], "Compute dtype (train: both).")
flags.DEFINE_integer("steps", 3, "Timed steps after warm-up (elastic: the steps of each run, "
                     "which logs 5 times).", lower_bound=2)
flags.DEFINE_integer("repeats", 3, "Rounds of the variants (medians are reported).",
                     lower_bound=1)
flags.DEFINE_string("output", None, "Also write the JSON result to this file.")
flags.DEFINE_string("dataset_dir", None, "input: recipe-format TFRecords to read.")
flags.DEFINE_integer("input_images", 1024, "input: images to generate without --dataset_dir.",
                     lower_bound=64)
flags.DEFINE_boolean("horovod", True, "loop_overhead: also the horovodrun -np 2 rows.")
flags.DEFINE_integer("horovod_workers", 0, "train: also this many workers under horovodrun on "
                     "this host, with thread pools per worker and with TensorFlow's own (0: "
                     "not).", lower_bound=0)
flags.DEFINE_boolean("keras_fit", False, "train: also keras.applications' DenseNet trained "
                     "with model.fit, alternated with the engine (a source checkout: runs "
                     "tests/benchmarks/keras_fit.py; Keras stays out of launch/).")
flags.DEFINE_integer("soak_epochs", 40, "soak: epochs of the long run.", lower_bound=4)
flags.DEFINE_integer("soak_steps_per_epoch", 100, "soak: steps per epoch.", lower_bound=10)
flags.DEFINE_list("soak_train_flags", [], "soak: training flags added to the run's own, e.g. "
                  "--soak_train_flags=--precise_bn_batches=4,--ema_decay=0.999 (what else a "
                  "long run exercises).")
flags.DEFINE_integer("input_batches", 30, "input: timed batches per measurement.", lower_bound=5)


def measure(fv):
    batch = fv.batch_size or (64 if fv.mode == "memory" else 32)
    shape = dict(model=fv.model, batch_size=batch, image_size=fv.image_size)
    if fv.mode == "memory":
        return memory.run(**shape, dtype=fv.dtype, steps=fv.steps, repeats=fv.repeats)
    if fv.mode == "train":
        dtypes = ["fp32", "bf16"] if fv.dtype == "both" else [fv.dtype]
        return train.run(**shape, dtypes=dtypes, steps=fv.steps, repeats=fv.repeats,
                         horovod_workers=fv.horovod_workers,
                         keras_fit=KERAS_FIT if fv.keras_fit else None)
    if fv.mode == "conv_floor":
        return conv_floor.run(**shape, dtype=fv.dtype, steps=fv.steps)
    if fv.mode == "elastic":
        return elastic.run(**shape, steps=fv.steps, repeats=fv.repeats)
    if fv.mode == "soak":
        return soak.run(epochs=fv.soak_epochs, steps_per_epoch=fv.soak_steps_per_epoch,
                        train_flags=fv.soak_train_flags)
    if fv.mode == "loop_overhead":
        return loop_overhead.run(steps=fv.steps, rounds=fv.repeats, horovod=fv.horovod)
    return input_rate.run(dataset_dir=fv.dataset_dir, input_images=fv.input_images,
                          image_size=fv.image_size, batch_size=batch,
                          input_batches=fv.input_batches, repeats=fv.repeats)


def main(argv):
    del argv
    if FLAGS.dtype == "both" and FLAGS.mode != "train":
        raise app.UsageError("--dtype=both is for --mode=train; run other modes once per dtype")
    if FLAGS.keras_fit and FLAGS.mode != "train":
        raise app.UsageError("--keras_fit is for --mode=train")
    if FLAGS.keras_fit and not os.path.exists(KERAS_FIT):
        raise app.UsageError(f"--keras_fit needs a source checkout: {KERAS_FIT} is missing")
    text = json.dumps(measure(FLAGS), indent=2)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
