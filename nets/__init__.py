"""The model zoo: DenseNets on tf.Module, no Keras.

    net = nets.build("densenet121", num_classes=1000, compute_dtype="bfloat16")
    logits = net(images, training=True)        # float32 [N, 1000] from NHWC images
    nets.load_keras_weights(net, "densenet121_weights_tf_dim_ordering_tf_kernels.h5")
"""
from nets.densenet import CONFIGS, DenseNet, build_densenet
from nets.keras_weights import WeightsMismatch, load_keras_weights

MODEL_NAMES = tuple(CONFIGS)


def build(name: str, *, num_classes: int = 1000, **options) -> DenseNet:
    """Builds a named DenseNet, or with name="densenet" a custom one from `blocks`,
    `growth_rate`, `stem_filters` (and `compression`, `bottleneck_width`).

    options: dropout_rate, bn_epsilon, bn_momentum, kernel_initializer ("glorot_uniform" or
    "he_normal"), compute_dtype ("float32" or "bfloat16"), data_format ("NHWC" or "NCHW"),
    recompute, seed.
    """
    if name == "densenet":
        try:
            blocks = options.pop("blocks")
            growth_rate = options.pop("growth_rate")
            stem_filters = options.pop("stem_filters")
        except KeyError as e:
            raise ValueError(f"a custom densenet needs {e.args[0]}") from None
        return DenseNet(blocks, growth_rate, stem_filters, num_classes=num_classes, **options)
    return build_densenet(name, num_classes=num_classes, **options)


def parameter_count(net, trainable_only=False):
    """Trainable weights plus, unless trainable_only, BN moving statistics (as Keras counts)."""
    variables = net.trainable_variables_in_order()
    if not trainable_only:
        variables = variables + net.moving_statistics()
    return sum(int(v.shape.num_elements()) for v in variables)


__all__ = ["build", "load_keras_weights", "parameter_count", "WeightsMismatch", "MODEL_NAMES",
           "DenseNet"]
