"""Top-5 classes of image files with a trained run:

    python -m launch.predict --model_dir=RUN image.jpg [more images ...]

Prints one line per image: path, then class (name when the data set has names) and probability.
A file that is not an image ends the command with one line naming it and exit code 1.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import sys

from absl import app, flags

from launch.errors import ONE_LINE_ERRORS, CommandError, report

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The training run (holds flags.txt and checkpoints/).")
flags.DEFINE_string("checkpoint", None, "A checkpoint of the run (default: its latest).")
flags.DEFINE_integer("top", 5, "Classes to print per image.", lower_bound=1)
flags.mark_flag_as_required("model_dir")


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more image files")
    import tensorflow as tf

    from input import preprocessing
    from launch import run_dir
    try:
        net, run_flags, names, _ = run_dir.load(FLAGS.model_dir, FLAGS.checkpoint)
    except ONE_LINE_ERRORS as e:
        return report("predict", e)
    size, style = run_flags.image_size, run_flags.preprocessing
    images = []
    for path in paths:
        try:
            encoded = tf.io.read_file(path)
            images.append(preprocessing.eval_image(encoded, size, style))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as e:
            reason = "no such file" if isinstance(e, tf.errors.NotFoundError) else \
                "not a decodable JPEG, PNG, GIF or BMP image"
            return report("predict", CommandError(f"{path}: {reason}"))
    probabilities = tf.nn.softmax(net(tf.stack(images), training=False)).numpy()
    top = min(FLAGS.top, net.num_classes)
    for path, p in zip(paths, probabilities):
        best = p.argsort()[::-1][:top]
        labels = [f"{names[c] if names else c} {p[c]:.3f}" for c in best]
        print(f"{path}: " + ", ".join(labels))
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
