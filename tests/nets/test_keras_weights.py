"""nets.load_keras_weights on files written by Keras itself."""
import numpy as np
import pytest
import tensorflow as tf

import nets
from tests import helpers
from tests.nets import keras_reference as ref

pytestmark = pytest.mark.smoke
SIZE = 64


@pytest.fixture(scope="module")
def keras121():
    return ref.keras_densenet("densenet121", SIZE, seed=3)


@pytest.fixture(scope="module")
def images():
    return tf.constant(helpers.real_images(SIZE, count=2))


def snapshot(net):
    return [v.numpy().copy() for v in net.variables]


# Keras 3 `.weights.h5` files are written by Keras 3 only: the current lane.
LAYOUTS = ["keras2_h5"] + (["keras3_weights_h5"] if ref.KERAS_MAJOR >= 3 else [])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_loaded_net_gives_the_keras_outputs(layout, keras121, images, tmp_path):
    if layout == "keras2_h5":
        path = str(tmp_path / "densenet121.h5")
        ref.save_keras2_h5(keras121, path)
    else:
        path = str(tmp_path / "densenet121.weights.h5")
        keras121.save_weights(path)
    net = nets.build("densenet121")
    # 120 conv kernels + 121 BNs x 4 + dense kernel and bias
    assert nets.load_keras_weights(net, path) == 120 + 121 * 4 + 2
    want = np.asarray(keras121(images, training=False))
    got = net(images, training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_file_of_another_model_names_the_first_misfit_and_loads_nothing(layout, tmp_path):
    model = ref.keras_densenet("densenet169", SIZE)
    if layout == "keras2_h5":
        path = str(tmp_path / "densenet169.h5")
        ref.save_keras2_h5(model, path)
    else:
        path = str(tmp_path / "densenet169.weights.h5")
        model.save_weights(path)
    net = nets.build("densenet121")
    before = snapshot(net)
    # Keras 2 files are matched by layer name, Keras 3 files by position within each layer kind,
    # so the first misfit differs: pool4_bn by name, conv4_block25's conv paired with pool4_conv.
    misfit = (r"pool4_bn/gamma has shape \(1280,\) in the file, the net needs \(1024,\)"
              if layout == "keras2_h5" else
              r"pool4_conv/kernel has shape \(1, 1, 1024, 128\) in the file, the net needs "
              r"\(1, 1, 1024, 512\)")
    with pytest.raises(nets.WeightsMismatch, match=misfit):
        nets.load_keras_weights(net, path)
    for old, new in zip(before, snapshot(net)):
        np.testing.assert_array_equal(old, new)


def test_skip_head_loads_the_body_for_another_class_count(keras121, images, tmp_path):
    path = str(tmp_path / "densenet121.h5")
    ref.save_keras2_h5(keras121, path)
    net = nets.build("densenet121", num_classes=10)
    head = [net.classifier.kernel.numpy().copy(), net.classifier.bias.numpy().copy()]
    with pytest.raises(nets.WeightsMismatch, match="predictions/kernel"):
        nets.load_keras_weights(net, path)  # 1000-class head does not fit 10 classes
    nets.load_keras_weights(net, path, skip_head=True)
    np.testing.assert_array_equal(net.classifier.kernel.numpy(), head[0])
    np.testing.assert_array_equal(net.classifier.bias.numpy(), head[1])
    # The body is Keras': pooled features equal the Keras model's penultimate output.
    penultimate = ref.keras_features(keras121)
    want = np.asarray(penultimate(images, training=False))
    np.testing.assert_allclose(net.features(images).numpy(), want, rtol=1e-4,
                               atol=1e-4 * np.abs(want).max())


def test_not_a_weights_file_is_refused(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    with pytest.raises(nets.WeightsMismatch, match="notes.h5: not a readable HDF5"):
        nets.load_keras_weights(nets.build("densenet121"), str(path))
