"""Small helpers shared by the test suites."""
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_unchecked(cmd, timeout, env=None, cwd=REPO, input=None):
    """Runs `cmd` from the repository with its PYTHONPATH (`input` on its standard input); the
    CompletedProcess, whatever its exit code."""
    full_env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd, input=input)


def run_checked(cmd, timeout, env=None, cwd=REPO, input=None):
    """Runs `cmd`, failing the test with its output (not a bare CalledProcessError) on error."""
    proc = run_unchecked(cmd, timeout, env=env, cwd=cwd, input=input)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
                             f"\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")


def photo_path(name):
    """The path of one of the sample photographs that matplotlib ships (PHOTOS)."""
    import matplotlib
    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", name)


def photographs():
    """The sample photographs as RGB PIL images."""
    from PIL import Image
    return [Image.open(photo_path(name)).convert("RGB") for name in PHOTOS]


def real_images(size, count=4):
    """`count` photographs (crops of the sample photos matplotlib ships) as float32
    [count, size, size, 3] in [-1, 1], the recipe's input range."""
    import numpy as np
    from PIL import Image

    photos = photographs()
    images = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        side = min(w, h) * (1.0 - 0.15 * (i // len(photos)))  # a different crop each round
        left, top = (w - side) * 0.5 * (i % 3) / 2, (h - side) * 0.5
        crop = photo.crop((int(left), int(top), int(left + side), int(top + side)))
        images.append(np.asarray(crop.resize((size, size), Image.BILINEAR), np.float32))
    return np.stack(images) / 127.5 - 1.0


# A small custom DenseNet and small images: the whole engine path in seconds.
TINY = ["--model=densenet", "--blocks=2,2", "--growth_rate=8", "--stem_filters=16",
        "--image_size=32", "--dtype=fp32", "--batch_size=8", "--warmup_epochs=0",
        "--initial_lr=0.05", "--log_steps=2", "--shuffle_buffer=16"]


def train_command(*args):
    import sys
    return [sys.executable, "-m", "launch.train", *args]


def run_train(args, timeout=300, env=None, check=True):
    """Runs `python -m launch.train ARGS`; returns the CompletedProcess."""
    cmd = train_command(*args)
    if check:
        return run_checked(cmd, timeout, env=env)
    return run_unchecked(cmd, timeout, env=env)


def metrics(model_dir, split=None, timing=False):
    """metrics.jsonl records (without the timing fields unless timing=True)."""
    import json
    timing_keys = {"images_per_sec", "input_wait_sec", "compute_sec", "seconds",
                   "peak_host_memory_mb", "peak_device_memory_mb", "elapsed_sec",
                   "precise_bn_sec"}
    out = []
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if split and record["split"] != split:
                continue
            if not timing:
                record = {k: v for k, v in record.items() if k not in timing_keys}
            out.append(record)
    return out


def checkpoint_values(path):
    """{variable key: array} of a checkpoint, read with TF's checkpoint reader (without the
    training time it records, which no two runs share)."""
    import tensorflow as tf
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith(("_CHECKPOINTABLE", "elapsed/")) and "save_counter" not in k}


def latest_checkpoint(model_dir):
    import tensorflow as tf
    return tf.train.latest_checkpoint(os.path.join(str(model_dir), "checkpoints"))


def tiny_run(small_data, model_dir, *extra):
    """launch.train arguments for the tiny net on the small data set."""
    return [f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY, *extra]


def assert_same_latest_checkpoints(a_dir, b_dir):
    """The latest checkpoints of two runs hold the same keys and values; returns the keys."""
    import numpy as np
    a = checkpoint_values(latest_checkpoint(a_dir))
    b = checkpoint_values(latest_checkpoint(b_dir))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    return list(a)


def saved_model_top1(export_dir, data_dir, image_size=32):
    """(top-1, examples) of a launch.export SavedModel on data_dir's validation TFRecords, read
    and preprocessed here (predict_images signature), against their labels."""
    import glob

    import numpy as np
    import tensorflow as tf

    from input import preprocessing
    loaded = tf.saved_model.load(str(export_dir))
    hits = count = 0
    for path in sorted(glob.glob(os.path.join(data_dir, "validation", "validation-*"))):
        for serialized in tf.data.TFRecordDataset(path):
            example = tf.train.Example.FromString(serialized.numpy()).features.feature
            image = preprocessing.eval_image(
                tf.constant(example["image/encoded"].bytes_list.value[0]), image_size)
            label = example["image/class/label"].int64_list.value[0] - 1
            probabilities = loaded.signatures["predict_images"](
                images=image[None])["probabilities"].numpy()[0]
            hits += int(np.argmax(probabilities) == label)
            count += 1
    return hits / count, count
