"""Loads keras.applications DenseNet weight files into our nets, all or nothing.

Two file layouts are read with h5py (no Keras needed):
- Keras 2 HDF5 (`model.save_weights("x.h5")`, and the published ImageNet files): the root attribute
  `layer_names` lists layers; each layer group's `weight_names` attribute lists its arrays, e.g.
  `conv1/conv/kernel:0`. Layers are matched by name (`conv1/conv` and Keras 3's `conv1_conv`
  alike).
- Keras 3 `.weights.h5`: `layers/<class>_<n>/vars/<i>`, named by layer class in the model's
  layer order, not by layer name; matched to our layers of the same kind in build order.
"""
import re

import h5py
import numpy as np

from nets import layers

_KERAS3_KIND = {layers.Conv2D: "conv2d", layers.BatchNorm: "batch_normalization",
                layers.Dense: "dense"}


class WeightsMismatch(ValueError):
    """The file does not fit the net; the message names the first variable that does not."""


def _normalized(name):
    return name.replace("/", "_")


def _read_keras2(f):
    """{normalized layer name: [arrays in Keras order]} from a Keras 2 HDF5 weights file."""
    group = f["model_weights"] if "model_weights" in f else f  # whole-model .h5 saves nest them
    by_layer = {}
    for raw in group.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                        for w in group[name].attrs.get("weight_names", [])]
        if weight_names:
            by_layer[_normalized(name)] = [np.asarray(group[name][w]) for w in weight_names]
    return by_layer


def _read_keras3(f, net):
    """Keras 3 names layers by class and order, so pair the n-th of a kind with our n-th."""
    stored = {}
    for key in f["layers"]:
        match = re.fullmatch(r"([a-z0-9_]+?)(?:_(\d+))?", key)
        if match and "vars" in f["layers"][key]:
            stored.setdefault(match.group(1), []).append((int(match.group(2) or 0), key))
    by_layer = {}
    for kind_class, kind in _KERAS3_KIND.items():
        ours = [m for m in net.layers_in_order() if isinstance(m, kind_class)]
        theirs = [key for _, key in sorted(stored.get(kind, []))]
        for i, key in enumerate(theirs):
            # Paired by position; a file layer past our last of its kind stays under its own
            # name, so that the caller reports it as a layer this net lacks.
            name = _normalized(ours[i].layer_name) if i < len(ours) else key
            arrays = f["layers"][key]["vars"]
            by_layer[name] = [np.asarray(arrays[str(j)]) for j in range(len(arrays))]
    return by_layer


def load_keras_weights(net, path, skip_head=False):
    """Assigns the arrays of a Keras DenseNet weights file to `net`.

    skip_head=True leaves `predictions` (the classifier) as it is, for fine-tuning to another
    number of classes. Raises WeightsMismatch naming the first variable that does not fit; the
    net is changed only when every variable fits.
    """
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsMismatch(f"{path}: not a readable HDF5 weights file ({e})") from None
    with f:
        if "layers" in f and "layer_names" not in f.attrs:
            by_layer = _read_keras3(f, net)
        elif "layer_names" in f.attrs or "model_weights" in f:
            by_layer = _read_keras2(f)
        else:
            raise WeightsMismatch(f"{path}: neither a Keras 2 nor a Keras 3 weights file")

    assignments = []
    for layer in net.layers_in_order():
        if skip_head and layer is net.classifier:
            continue
        key = _normalized(layer.layer_name)
        names = layer.KERAS_ORDER
        if key not in by_layer:
            raise WeightsMismatch(f"{path}: no weights for layer {layer.layer_name} "
                                  f"(a file for another model?)")
        arrays = by_layer.pop(key)
        if len(arrays) != len(names):
            raise WeightsMismatch(f"{path}: layer {layer.layer_name} holds {len(arrays)} arrays, "
                                  f"expected {len(names)} ({', '.join(names)})")
        for attr, value in zip(names, arrays):
            variable = getattr(layer, attr)
            if tuple(value.shape) != tuple(variable.shape):
                raise WeightsMismatch(
                    f"{path}: {layer.layer_name}/{attr} has shape {tuple(value.shape)} in the "
                    f"file, the net needs {tuple(variable.shape)}")
            assignments.append((variable, value))
    by_layer.pop("predictions", None)  # a head that skip_head left out, or a file's extra head
    if by_layer:
        raise WeightsMismatch(f"{path}: holds layers this {net.name} lacks, first "
                              f"{sorted(by_layer)[0]} (a file for a deeper model?)")
    for variable, value in assignments:
        variable.assign(value.astype(np.float32))
    return len(assignments)
