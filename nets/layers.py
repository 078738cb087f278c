"""Small tf.Module layers over tf.nn / tf.raw_ops: explicit variables, no Keras.

Every layer keeps its variables in float32 and computes in the dtype of its input, so one net
serves float32 and bfloat16 compute. Images are NHWC unless a layer is given data_format="NCHW".
"""
import math

import tensorflow as tf

KERNEL_INITIALIZERS = ("glorot_uniform", "he_normal")


def _fans(shape):
    """Keras' fan-in/fan-out for dense [in, out] and conv [h, w, in, out] kernels."""
    receptive_field = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def initial_kernel(shape, initializer, seed):
    """A float32 kernel drawn as Keras draws it, from a stateless seed pair (reproducible)."""
    fan_in, fan_out = _fans(shape)
    if initializer == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return tf.random.stateless_uniform(shape, seed, -limit, limit, tf.float32)
    if initializer == "he_normal":
        # Keras draws from a normal truncated at 2 sigma, with sigma corrected for the truncation.
        stddev = math.sqrt(2.0 / fan_in) / 0.87962566103423978
        return tf.random.stateless_truncated_normal(shape, seed, 0.0, stddev, tf.float32)
    raise ValueError(f"unknown kernel initializer {initializer!r}; expected one of "
                     f"{', '.join(KERNEL_INITIALIZERS)}")


class Layer(tf.Module):
    """A layer named as in keras.applications: `conv1/conv` names the layer and prefixes its
    variables (`conv1/conv/kernel:0`); the tf.Module name is the same with `_` for `/`."""

    def __init__(self, name):
        super().__init__(name=name.replace("/", "_"))
        self.layer_name = name

    def variable_scope(self):
        return tf.name_scope(self.layer_name + "/")  # absolute: no model prefix, as Keras

    def op_scope(self):
        """The name scope of the layer's ops (`conv5_block16_1_conv/Conv2D`, and in the
        gradient `gradient_tape/conv5_block16_1_conv/...`): a profile's op table then names the
        layer that ran each op (launch.profile groups by it)."""
        return tf.name_scope(self.name)

    def trainable_variables_in_keras_order(self):
        return [v for v in self.variables_in_keras_order() if v.trainable]

    def variables_in_keras_order(self):
        return [getattr(self, attr) for attr in self.KERAS_ORDER]


class Conv2D(Layer):
    """2-D convolution without bias (every DenseNet conv is followed by batch norm).

    kernel: float32 [size, size, in_channels, filters]. Input and output [N, H, W, C] (NHWC) or
    [N, C, H, W] (NCHW), in the input's dtype.
    """

    KERAS_ORDER = ("kernel",)

    def __init__(self, in_channels, filters, size, stride=1, padding="VALID", data_format="NHWC",
                 initializer="glorot_uniform", seed=(0, 0), name="conv"):
        super().__init__(name)
        self.stride, self.padding, self.data_format = stride, padding, data_format
        with self.variable_scope():
            self.kernel = tf.Variable(
                initial_kernel([size, size, in_channels, filters], initializer, seed),
                name="kernel")

    def __call__(self, x):
        with self.op_scope():
            return tf.nn.conv2d(x, tf.cast(self.kernel, x.dtype), self.stride, self.padding,
                                data_format=self.data_format)


class BatchNorm(Layer):
    """Batch normalization on the fused kernel (FusedBatchNormV3), as Keras' fused path.

    gamma, beta, moving_mean, moving_variance: float32 [channels]. Training normalizes with the
    batch statistics and returns them instead of assigning the moving averages, so that the caller
    applies each update exactly once per step even when the forward pass is recomputed for the
    gradient (see DenseNet's `recompute`). The caller moves the averages as
    `moving = momentum * moving + (1 - momentum) * batch`
    with the unbiased (n - 1) batch variance that the fused kernel returns: what Keras 2's fused
    batch norm (the vendor recipe's) and PyTorch do. Keras 3 averages the biased variance; the two
    differ by a factor n / (n - 1), n = batch x height x width, visible only on small maps.
    """

    KERAS_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")

    def __init__(self, channels, epsilon=1.001e-5, momentum=0.99, data_format="NHWC", name="bn"):
        super().__init__(name)
        self.epsilon, self.momentum, self.data_format = epsilon, momentum, data_format
        with self.variable_scope():
            self.gamma = tf.Variable(tf.ones([channels]), name="gamma")
            self.beta = tf.Variable(tf.zeros([channels]), name="beta")
            self.moving_mean = tf.Variable(tf.zeros([channels]), trainable=False,
                                           name="moving_mean")
            self.moving_variance = tf.Variable(tf.ones([channels]), trainable=False,
                                               name="moving_variance")

    def __call__(self, x, training):
        """(normalized x, statistics): in training the batch (mean, variance), else ()."""
        with self.op_scope():
            return self._normalize(x, training)

    def _normalize(self, x, training):
        if not training:
            y = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=self.gamma, offset=self.beta, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon,
                data_format=self.data_format, is_training=False)[0]
            return y, ()
        y, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=self.gamma, offset=self.beta, mean=tf.constant([], tf.float32),
            variance=tf.constant([], tf.float32), epsilon=self.epsilon,
            data_format=self.data_format, is_training=True)[:3]
        return y, (mean, variance)


class Dense(Layer):
    """Fully connected layer. kernel float32 [in, out], bias float32 [out]; computes in float32."""

    KERAS_ORDER = ("kernel", "bias")

    def __init__(self, in_features, out_features, initializer="glorot_uniform", seed=(0, 0),
                 name="dense"):
        super().__init__(name)
        with self.variable_scope():
            self.kernel = tf.Variable(
                initial_kernel([in_features, out_features], initializer, seed), name="kernel")
            self.bias = tf.Variable(tf.zeros([out_features]), name="bias")

    def __call__(self, x):
        with self.op_scope():
            return tf.nn.bias_add(tf.matmul(tf.cast(x, tf.float32), self.kernel), self.bias)


def spatial_axes(data_format):
    return (1, 2) if data_format == "NHWC" else (2, 3)


def channel_axis(data_format):
    return 3 if data_format == "NHWC" else 1


def zero_pad(x, pad, data_format="NHWC"):
    """Pads height and width by `pad` on every side, as Keras' ZeroPadding2D."""
    paddings = [[0, 0], [pad, pad], [pad, pad], [0, 0]]
    if data_format == "NCHW":
        paddings = [[0, 0], [0, 0], [pad, pad], [pad, pad]]
    return tf.pad(x, paddings)


def _pool_nhwc(pool, x, size, stride, data_format):
    """Pools in NHWC whatever the net's layout: TF 2.15's CPU pooling silently returns wrong
    values for NCHW (seen in eager and in tf.function), and the four pools of a DenseNet make
    the two transposes negligible next to its convolutions, which stay in NCHW."""
    if data_format == "NCHW":
        x = tf.transpose(x, [0, 2, 3, 1])
    y = pool(x, size, stride, "VALID")
    return tf.transpose(y, [0, 3, 1, 2]) if data_format == "NCHW" else y


def max_pool(x, size, stride, data_format="NHWC"):
    return _pool_nhwc(tf.nn.max_pool2d, x, size, stride, data_format)


def avg_pool(x, size, stride, data_format="NHWC"):
    return _pool_nhwc(tf.nn.avg_pool2d, x, size, stride, data_format)


def global_avg_pool(x, data_format="NHWC"):
    """[N, H, W, C] -> float32 [N, C]; the mean is taken in float32 for bfloat16 inputs."""
    return tf.reduce_mean(tf.cast(x, tf.float32), axis=spatial_axes(data_format))


def dropout(x, rate, seed):
    """Inverted dropout from a stateless seed pair: a recomputed pass drops the same units.
    No seed, no dropout (inference, or a training-mode pass that must not drop)."""
    if not rate or seed is None:
        return x
    return tf.nn.experimental.stateless_dropout(x, rate, seed)
