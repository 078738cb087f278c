"""ILSVRC 2012 raw images -> the recipe's TFRecords, with the recipe's command line:

    python -m launch.preprocess_imagenet --raw_data_dir=$IMAGENET_HOME \
        --local_scratch_dir=$IMAGENET_HOME/tf_records
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import sys

from absl import app, flags

from input import imagenet_converter, records

FLAGS = flags.FLAGS
flags.DEFINE_string("raw_data_dir", None,
                    "ILSVRC layout: train/<synset>/*.JPEG, validation/*.JPEG, synset_labels.txt.")
flags.DEFINE_string("local_scratch_dir", None, "Output: train/ and validation/ shards.")
flags.DEFINE_integer("train_shards", 1024, "Training shards.", lower_bound=1)
flags.DEFINE_integer("validation_shards", 128, "Validation shards.", lower_bound=1)
flags.DEFINE_integer("num_workers", None, "Processes (default: one per core).", lower_bound=1)
flags.mark_flags_as_required(["raw_data_dir", "local_scratch_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        result = imagenet_converter.convert(FLAGS.raw_data_dir, FLAGS.local_scratch_dir,
                                            FLAGS.train_shards, FLAGS.validation_shards,
                                            FLAGS.num_workers)
    except records.InputError as e:
        sys.exit(f"preprocess_imagenet: {e}")
    for split, (written, kept) in result.items():
        print(f"{split}: {written} shards written, {kept} already complete and kept")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
