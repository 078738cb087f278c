"""export, predict, profiling and the Horovod timeline, on a small trained run."""
import glob
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests.helpers import TINY


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("trained")
    helpers.run_train([f"--dataset_dir={small_data}", f"--model_dir={model_dir}", *TINY,
                       "--epochs=1", "--steps_per_epoch=4", "--profile_steps=1,3",
                       "--seed=4"])
    return model_dir


def sample_images(small_data, count):
    """(encoded bytes, label) of the first validation records."""
    path = sorted(glob.glob(os.path.join(small_data, "validation", "validation-*")))[0]
    out = []
    for record in tf.data.TFRecordDataset(path).take(count):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        out.append((f["image/encoded"].bytes_list.value[0],
                    f["image/class/label"].int64_list.value[0] - 1))
    return out


def test_profile_window_writes_a_trace(trained):
    traces = glob.glob(str(trained / "train" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert traces and os.path.getsize(traces[0]) > 1000


def test_export_serves_what_the_net_computes_and_predict_agrees(trained, small_data, tmp_path):
    export_dir = tmp_path / "saved"
    helpers.run_checked([sys.executable, "-m", "launch.export", f"--model_dir={trained}",
                         f"--export_dir={export_dir}"], timeout=300)
    loaded = tf.saved_model.load(str(export_dir))
    samples = sample_images(small_data, 3)
    served = loaded.signatures["serving_default"](
        encoded=tf.constant([encoded for encoded, _ in samples]))
    probabilities = served["probabilities"].numpy()
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # The same images preprocessed by the input module's eval path, through predict_images.
    from input import preprocessing
    images = tf.stack([preprocessing.eval_image(tf.constant(e), 32) for e, _ in samples])
    again = loaded.signatures["predict_images"](images=images)["probabilities"].numpy()
    np.testing.assert_allclose(again, probabilities, rtol=1e-5, atol=1e-6)

    files = []
    for i, (encoded, _) in enumerate(samples):
        files.append(tmp_path / f"image{i}.jpg")
        files[-1].write_bytes(encoded)
    out = helpers.run_checked([sys.executable, "-m", "launch.predict", f"--model_dir={trained}",
                               *map(str, files)], timeout=300).stdout.strip().splitlines()
    names = json.load(open(os.path.join(small_data, "dataset.json")))["class_names"]
    for line, p in zip(out, probabilities):
        path, ranking = line.split(": ", 1)
        best = ranking.split(", ")[0]
        assert best == f"{names[int(np.argmax(p))]} {p.max():.3f}"
        assert len(ranking.split(", ")) == 5


@pytest.mark.slow
def test_horovod_timeline_is_written(small_data, tmp_path):
    timeline = tmp_path / "timeline.json"
    horovodrun = os.path.join(os.path.dirname(sys.executable), "horovodrun")
    helpers.run_checked([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo",
                         *helpers.train_command(f"--dataset_dir={small_data}",
                                                f"--model_dir={tmp_path / 'run'}", *TINY,
                                                "--epochs=1", "--steps_per_epoch=2",
                                                "--validation_steps=0",
                                                f"--horovod_timeline={timeline}")], 300)
    text = timeline.read_text()
    assert "ALLREDUCE" in text or "allreduce" in text.lower()
