"""Keras as the reference our nets must match: keras.applications DenseNets and weight transfer.

Keras is imported here only (tests), never by the engine. `keras` is Keras 3 on the current lane
and Keras 2 on the TF 2.15 lane.
"""
import keras
import numpy as np

KERAS_MODELS = {"densenet121": "DenseNet121", "densenet169": "DenseNet169",
                "densenet201": "DenseNet201"}
KERAS_MAJOR = int(keras.__version__.split(".")[0])


def keras_densenet(name, size, classes=1000, seed=0):
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, KERAS_MODELS[name])(
        weights=None, input_shape=(size, size, 3), classes=classes,
        classifier_activation=None)
    # Random, non-trivial BN statistics, so that inference mode tests them too.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    return model


def copy_keras_to_net(model, net):
    """Assigns every Keras layer's arrays to our layer of the same (normalized) name."""
    ours = {layer.layer_name.replace("/", "_"): layer for layer in net.layers_in_order()}
    copied = 0
    for layer in model.layers:
        arrays = layer.get_weights()
        if not arrays:
            continue
        target = ours.pop(layer.name.replace("/", "_"))
        for variable, value in zip(target.variables_in_keras_order(), arrays, strict=True):
            variable.assign(value)
            copied += 1
    assert not ours, f"layers Keras lacks: {sorted(ours)[:3]}"
    return copied


def keras_bn_layers(model):
    return {layer.name.replace("/", "_"): layer for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


def save_keras2_h5(model, path):
    """The Keras 2 HDF5 layout (`layer_names`, `weight_names`), written by Keras itself."""
    if KERAS_MAJOR == 2:
        model.save_weights(path)
    else:
        import h5py
        from keras.src.legacy.saving import legacy_h5_format
        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)


def as_tf_variable(weight):
    """The tf.Variable behind a Keras weight (Keras 3 wraps it; Keras 2's is one)."""
    return getattr(weight, "value", weight) if KERAS_MAJOR >= 3 else weight


def unbiased_moving_variance(bn_layer, before, batch):
    """The moving variance after one training call, averaging the unbiased batch variance.

    Keras 2's fused batch norm (the vendor recipe's, and ours) averages the unbiased variance;
    Keras 3 averages the biased one. On Keras 3 the batch variance is recovered from the update
    Keras made and rescaled by n / (n - 1).
    """
    after = np.array(bn_layer.moving_variance)
    if KERAS_MAJOR == 2:
        return after
    momentum = bn_layer.momentum
    biased = (after - momentum * before) / (1.0 - momentum)
    height, width = tuple(bn_layer.input.shape)[1:3]
    n = batch * height * width
    return momentum * before + (1.0 - momentum) * biased * n / (n - 1)


def keras_features(model):
    """The Keras model up to its global average pool (the classifier's input)."""
    return keras.Model(model.inputs, model.get_layer("avg_pool").output)
