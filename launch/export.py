"""Export a trained run as a SavedModel with serving signatures:

    python -m launch.export --model_dir=RUN --export_dir=OUT [--checkpoint=RUN/checkpoints/ckpt-N]
        [--ema]   (the weight average of a run trained with --ema_decay)
        [--best]  (the checkpoint --keep_best kept: its weight average for an _ema metric)

serving_default(encoded: string [N]) -> probabilities [N, C], top5_classes, top5_probabilities:
    JPEG/PNG bytes, preprocessed as the run evaluated (shorter side resize, central crop).
predict_images(images: float32 [N, S, S, 3]) -> the same, from already preprocessed images.
"""
import launch.quiet_start  # noqa: F401 - first: TensorFlow starts without its noise

# isort: split
import os
import sys

from absl import app, flags

from engine import files
from engine.errors import WriteFailed
from launch import failures
from launch.errors import ONE_LINE_ERRORS, report

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The training run (holds flags.txt and checkpoints/).")
flags.DEFINE_string("checkpoint", None, "A checkpoint of the run (default: its latest).")
flags.DEFINE_string("export_dir", None, "Where to write the SavedModel.")
flags.DEFINE_boolean("ema", False, "Export the weight average (a run trained with "
                     "--ema_decay) instead of the weights.")
flags.DEFINE_boolean("best", False, "Export the best checkpoint of a run trained with "
                     "--keep_best (with a --keep_best=*_ema metric, its weight average).")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def build_module(net, image_size, style):
    import tensorflow as tf

    from input import preprocessing

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def _outputs(self, images):
            probabilities = tf.nn.softmax(self.net(images, training=False))
            top = tf.math.top_k(probabilities, k=min(5, net.num_classes))
            return {"probabilities": probabilities, "top5_classes": top.indices,
                    "top5_probabilities": top.values}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, encoded):
            images = tf.map_fn(lambda e: preprocessing.eval_image(e, image_size, style),
                               encoded, fn_output_signature=tf.float32)
            return self._outputs(images)

        @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3],
                                                    tf.float32)])
        def predict_images(self, images):
            return self._outputs(images)

    return Serving()


def save_whole(module, export_dir):
    """The SavedModel in `export_dir`, written beside it and renamed into place: a failed write
    (disk full, read-only) leaves no half SavedModel and keeps an earlier export there whole."""
    import tensorflow as tf
    staging = export_dir.rstrip("/") + ".partial"
    files.remove_quietly(staging)
    try:
        tf.saved_model.save(module, staging,
                            signatures={"serving_default": module.serve,
                                        "predict_images": module.predict_images})
        if os.path.exists(export_dir):
            files.remove_quietly(export_dir)
        os.replace(staging, export_dir)
    except (tf.errors.OpError, OSError) as e:
        files.remove_quietly(staging)
        raise WriteFailed(f"could not write the export to {export_dir}: "
                          f"{files.cause(e)}") from None


def main(argv):
    del argv

    from launch import run_dir
    try:
        checkpoint, ema = FLAGS.checkpoint, FLAGS.ema
        if FLAGS.best:
            checkpoint, averaged = run_dir.best_checkpoint(FLAGS.model_dir, checkpoint=checkpoint)
            ema = ema or averaged
        net, run_flags, _, path = run_dir.load(FLAGS.model_dir, checkpoint, ema=ema)
    except ONE_LINE_ERRORS as e:
        return report("export", e)
    module = build_module(net, run_flags.image_size, run_flags.preprocessing)
    try:
        save_whole(module, FLAGS.export_dir)
    except WriteFailed as e:
        return report("export", e, failures.EXIT_DISK)
    weights = "weight average of " if ema else ""
    print(f"export: {weights}{path} -> {FLAGS.export_dir} (signatures serving_default, "
          f"predict_images)")
    return 0


def run():
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
