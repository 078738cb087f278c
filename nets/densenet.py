"""DenseNet (Huang et al. 2017) built layer by layer, with keras.applications' layer names.

    stem:        pad 3 -> conv1/conv 7x7/2 -> conv1/bn -> ReLU -> pad 1 -> pool1 3x3/2 max
    dense layer: convB_blockL_0_bn -> ReLU -> _1_conv 1x1 to 4k -> _1_bn -> ReLU -> _2_conv 3x3 to k
                 -> concatenated with the layer's input
    transition:  poolB_bn -> ReLU -> poolB_conv 1x1 to channels * compression -> 2x2/2 avg pool
    head:        bn -> ReLU -> global average pool -> predictions (dense)

A dense block grows one concatenation layer by layer (see `dense_block`). With `recompute=True`
it keeps its feature maps as a list instead, and the "concat -> BN -> ReLU -> 1x1 conv" of each
dense layer is recomputed in the backward pass instead of kept (Pleiss et al. 2017,
memory-efficient DenseNets), which removes the quadratic growth of stored concatenations.
"""
import tensorflow as tf

from nets import layers

# name: (blocks, growth_rate, stem_filters)
CONFIGS = {
    "densenet121": ((6, 12, 24, 16), 32, 64),
    "densenet161": ((6, 12, 36, 24), 48, 96),
    "densenet169": ((6, 12, 32, 32), 32, 64),
    "densenet201": ((6, 12, 48, 32), 32, 64),
    "densenet264": ((6, 12, 64, 48), 32, 64),
}
COMPUTE_DTYPES = {"float32": tf.float32, "bfloat16": tf.bfloat16}


class _Seeds:
    """Hands out distinct stateless seed pairs for variable initialization."""

    def __init__(self, seed):
        self.seed, self.count = seed, 0

    def __call__(self):
        self.count += 1
        return (self.seed, self.count)


class DenseLayer(tf.Module):
    """One dense layer: the bottleneck (BN-ReLU-1x1 conv) then BN-ReLU-3x3 conv to k channels."""

    def __init__(self, in_channels, growth_rate, bottleneck_width, prefix, opts, seeds):
        super().__init__(name=prefix)
        bottleneck = bottleneck_width * growth_rate
        fmt = opts["data_format"]
        self.bn0 = layers.BatchNorm(in_channels, opts["bn_epsilon"], opts["bn_momentum"], fmt,
                                    name=f"{prefix}_0_bn")
        self.conv1 = layers.Conv2D(in_channels, bottleneck, 1, data_format=fmt,
                                   initializer=opts["initializer"], seed=seeds(),
                                   name=f"{prefix}_1_conv")
        self.bn1 = layers.BatchNorm(bottleneck, opts["bn_epsilon"], opts["bn_momentum"], fmt,
                                    name=f"{prefix}_1_bn")
        self.conv2 = layers.Conv2D(bottleneck, growth_rate, 3, padding="SAME", data_format=fmt,
                                   initializer=opts["initializer"], seed=seeds(),
                                   name=f"{prefix}_2_conv")
        self.opts = opts

    def _bottleneck(self, features, training):
        axis = layers.channel_axis(self.opts["data_format"])
        x = tf.concat(features, axis=axis) if len(features) > 1 else features[0]
        x, statistics = self.bn0(x, training)
        return self.conv1(tf.nn.relu(x)), statistics

    def __call__(self, features, training, dropout_seeds):
        """(k new channels, the batch statistics of bn0 and bn1 in training, else ())."""
        # Relative, unlike tf.Module.name_scope (absolute: it would drop the train step's phase
        # scope, e.g. "forward/", from the layer's ops): its concat, ReLUs and dropout are named
        # by it in profiles.
        with tf.name_scope(self.name):
            return self._layer(features, training, dropout_seeds)

    def _layer(self, features, training, dropout_seeds):
        if training and self.opts["recompute"]:
            # The backward pass runs the bottleneck again; only the first (forward) call's
            # batch statistics are returned, so moving averages move once per step.
            first_call = []

            @tf.recompute_grad
            def bottleneck(*maps):
                x, statistics = self._bottleneck(list(maps), training)
                if not first_call:
                    first_call.append(statistics)
                return x

            x = bottleneck(*features)
            statistics = first_call[0]
        else:
            x, statistics = self._bottleneck(features, training)
        rate = self.opts["dropout_rate"] if training else 0.0
        x = layers.dropout(x, rate, dropout_seeds[0])
        x, more = self.bn1(x, training)
        x = self.conv2(tf.nn.relu(x))
        return layers.dropout(x, rate, dropout_seeds[1]), statistics + more


class Transition(tf.Module):
    """BN-ReLU-1x1 conv to compressed channels, then 2x2/2 average pooling."""

    def __init__(self, in_channels, out_channels, prefix, opts, seeds):
        super().__init__(name=prefix)
        fmt = opts["data_format"]
        self.bn = layers.BatchNorm(in_channels, opts["bn_epsilon"], opts["bn_momentum"], fmt,
                                   name=f"{prefix}_bn")
        self.conv = layers.Conv2D(in_channels, out_channels, 1, data_format=fmt,
                                  initializer=opts["initializer"], seed=seeds(),
                                  name=f"{prefix}_conv")
        self.opts = opts

    def __call__(self, x, training, dropout_seed):
        with tf.name_scope(self.name):  # relative, as a dense layer's
            return self._transition(x, training, dropout_seed)

    def _transition(self, x, training, dropout_seed):
        x, statistics = self.bn(x, training)
        x = self.conv(tf.nn.relu(x))
        x = layers.dropout(x, self.opts["dropout_rate"] if training else 0.0, dropout_seed)
        return layers.avg_pool(x, 2, 2, self.opts["data_format"]), statistics


class DenseNet(tf.Module):
    """A DenseNet classifier.

    net(images, training) -> float32 logits [N, num_classes], from images [N, H, W, 3] (NHWC,
    whatever the net's data_format; float32 or bfloat16). In training, batch-norm moving averages
    are updated once per call.
    """

    def __init__(self, blocks, growth_rate: int, stem_filters: int, *, num_classes: int = 1000,
                 compression: float = 0.5, bottleneck_width: int = 4, dropout_rate: float = 0.0,
                 bn_epsilon: float = 1.001e-5, bn_momentum: float = 0.99,
                 kernel_initializer: str = "glorot_uniform", compute_dtype: str = "float32",
                 data_format: str = "NHWC", recompute: bool = False, seed: int = 0,
                 name: str = "densenet"):
        super().__init__(name=name)
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, "
                             f"not {compute_dtype!r}")
        if data_format not in ("NHWC", "NCHW"):
            raise ValueError(f"data_format must be NHWC or NCHW, not {data_format!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), not {dropout_rate}")
        if kernel_initializer not in layers.KERNEL_INITIALIZERS:
            raise ValueError(f"unknown kernel_initializer {kernel_initializer!r}; expected one "
                             f"of {', '.join(layers.KERNEL_INITIALIZERS)}")
        self.blocks = tuple(blocks)
        self.num_classes = num_classes
        self.compute_dtype = COMPUTE_DTYPES[compute_dtype]
        self.data_format = data_format
        self.recompute = recompute
        self.dropout_rate = dropout_rate
        opts = dict(data_format=data_format, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
                    initializer=kernel_initializer, dropout_rate=dropout_rate,
                    recompute=recompute)
        seeds = self._seeds = _Seeds(seed)
        with self.name_scope:
            self.stem_conv = layers.Conv2D(3, stem_filters, 7, stride=2, data_format=data_format,
                                           initializer=kernel_initializer, seed=seeds(),
                                           name="conv1/conv")
            self.stem_bn = layers.BatchNorm(stem_filters, bn_epsilon, bn_momentum, data_format,
                                            name="conv1/bn")
            channels = stem_filters
            self.dense_blocks, self.transitions = [], []
            for b, num_layers in enumerate(self.blocks):
                block = []
                for i in range(num_layers):
                    block.append(DenseLayer(channels, growth_rate, bottleneck_width,
                                            f"conv{b + 2}_block{i + 1}", opts, seeds))
                    channels += growth_rate
                self.dense_blocks.append(block)
                if b < len(self.blocks) - 1:
                    out_channels = int(channels * compression)
                    self.transitions.append(
                        Transition(channels, out_channels, f"pool{b + 2}", opts, seeds))
                    channels = out_channels
            self.head_bn = layers.BatchNorm(channels, bn_epsilon, bn_momentum, data_format,
                                            name="bn")
            self.classifier = layers.Dense(channels, num_classes, seed=seeds(),
                                           name="predictions")
            self.num_features = channels
            # For a training-mode call given no dropout_key (the engine always gives one): its
            # masks differ every call yet replay after a resume, the generator's state being a
            # variable that checkpoints hold.
            self.dropout_rng = (tf.random.Generator.from_seed(seed) if dropout_rate else None)

    def features(self, images, training=False):
        """Images -> float32 pooled features [N, num_features] (the classifier's input). In
        training, batch-norm moving averages are updated once per call."""
        pooled, statistics = self.forward_features(images, training=training)
        if training:
            self.assign_moving_statistics(self.moved_statistics(statistics))
        return pooled

    def __call__(self, images, training=False):
        return self.classifier(self.features(images, training))

    def forward(self, images, *, training, dropout=True, dropout_key=None):
        """(logits, batch statistics), updating nothing. In training the statistics are a
        tuple of tensors, (mean, variance) per batch norm in the order of `moving_statistics()`
        (in inference, ()), for `moved_statistics`: a caller can then apply them conditionally
        (a train step that refuses a non-finite update refuses these too). dropout=False: a
        training-mode pass without dropout that leaves the dropout generator untouched.
        dropout_key: int64 [2], the masks' stateless key (e.g. from run seed, step and slot);
        without it they come from the net's own generator."""
        pooled, statistics = self.forward_features(images, training=training, dropout=dropout,
                                                   dropout_key=dropout_key)
        return self.classifier(pooled), statistics

    @property
    def statistics_momentum(self):
        """moving = momentum * moving + (1 - momentum) * batch, for every batch norm."""
        return self.head_bn.momentum

    def moved_statistics(self, batch_statistics, moving=None):
        """The moving statistics one update on from `moving` (default: their current values)
        towards `batch_statistics` (what `forward` returned), assigning nothing."""
        if moving is None:
            moving = [v.read_value() for v in self.moving_statistics()]
        decay = 1.0 - self.statistics_momentum
        return tuple(m - (m - b) * decay for m, b in zip(moving, batch_statistics, strict=True))

    def assign_moving_statistics(self, values):
        for variable, value in zip(self.moving_statistics(), values, strict=True):
            variable.assign(value)

    def forward_features(self, images, *, training, dropout=True, dropout_key=None):
        """(pooled features, batch statistics as `forward` returns them)."""
        num_dropouts = 2 * sum(self.blocks) + len(self.transitions)
        if training and dropout and self.dropout_rate and dropout_key is not None:
            dropout_seeds = tf.unstack(tf.random.experimental.stateless_split(
                tf.cast(dropout_key, tf.int64), num_dropouts))
        elif training and dropout and self.dropout_rate:
            dropout_seeds = tf.unstack(self.dropout_rng.make_seeds(num_dropouts), axis=1)
        else:
            dropout_seeds = [None] * num_dropouts
        seed_iter = iter(dropout_seeds)
        fmt = self.data_format
        x = tf.cast(images, self.compute_dtype)
        if fmt == "NCHW":
            x = tf.transpose(x, [0, 3, 1, 2])
        x, statistics = self.stem_bn(self.stem_conv(layers.zero_pad(x, 3, fmt)), training)
        x = layers.max_pool(layers.zero_pad(tf.nn.relu(x), 1, fmt), 3, 2, fmt)
        for b, block in enumerate(self.dense_blocks):
            x, more = self.dense_block(b, x, training,
                                       [next(seed_iter) for _ in range(2 * len(block))])
            statistics += more
            if b < len(self.transitions):
                x, more = self.transitions[b](x, training, next(seed_iter))
                statistics += more
        x, more = self.head_bn(x, training)
        return layers.global_avg_pool(tf.nn.relu(x), fmt), statistics + more

    def dense_block(self, b, x, training, dropout_seeds=None):
        """Dense block `b` on its input x: (x concatenated with every layer's k new channels,
        the block's batch statistics).

        The running concatenation grows by one concat per layer, as in Keras: its gradient is
        then two slices and one add per layer, where concatenating the whole list at each layer
        makes a slice per (layer, earlier feature) pair and a sum per feature, several times the
        slice/add/concat op time (`python -m launch.benchmark --mode=train` shows the step).
        With recompute, each layer keeps the list and concatenates inside its recomputed
        function, so that no concatenation is stored.
        """
        block = self.dense_blocks[b]
        seeds = dropout_seeds or [None] * (2 * len(block))
        axis = layers.channel_axis(self.data_format)
        statistics = ()
        if training and self.recompute:
            features = [x]
            for i, layer in enumerate(block):
                new, more = layer(features, training, seeds[2 * i:2 * i + 2])
                features.append(new)
                statistics += more
            return tf.concat(features, axis=axis), statistics
        for i, layer in enumerate(block):
            new, more = layer([x], training, seeds[2 * i:2 * i + 2])
            x = tf.concat([x, new], axis=axis)
            statistics += more
        return x, statistics

    def variables_by_role(self):
        """{role: variables} for weight decay by role: conv and dense `kernels`, `biases`, and
        the batch norms' trainable `normalization` parameters (gamma, beta)."""
        return {"kernels": self.kernels(), "biases": self.biases(),
                "normalization": self.bn_parameters()}

    def batch_norms(self):
        """In the order of the forward pass (that of its batch statistics)."""
        return [m for m in self.layers_in_order() if isinstance(m, layers.BatchNorm)]

    def kernels(self):
        """Conv and dense kernels."""
        return [m.kernel for m in self.submodules if isinstance(m, (layers.Conv2D, layers.Dense))]

    def biases(self):
        return [self.classifier.bias]

    def bn_parameters(self):
        """Trainable BN gamma and beta."""
        return [v for bn in self.batch_norms() for v in (bn.gamma, bn.beta)]

    def moving_statistics(self):
        """Moving mean and variance of each batch norm, in the order of `forward`'s statistics."""
        return [v for bn in self.batch_norms() for v in (bn.moving_mean, bn.moving_variance)]

    def trainable_variables_in_order(self):
        """Trainable variables in a fixed order (stem to head): what the optimizer updates."""
        return [v for layer in self.layers_in_order() for v in layer.trainable_variables]

    def layers_in_order(self):
        """The layers with variables, as built: stem, blocks and transitions, head."""
        out = [self.stem_conv, self.stem_bn]
        for b, block in enumerate(self.dense_blocks):
            for layer in block:
                out += [layer.bn0, layer.conv1, layer.bn1, layer.conv2]
            if b < len(self.transitions):
                out += [self.transitions[b].bn, self.transitions[b].conv]
        return out + [self.head_bn, self.classifier]

    def reset_classifier(self, num_classes: int):
        """A new, freshly initialized classifier for `num_classes` classes (fine-tuning)."""
        self.num_classes = num_classes
        self.classifier = layers.Dense(self.num_features, num_classes, seed=self._seeds(),
                                       name="predictions")

    def checkpoint_parts(self, *, head=True):
        """{attribute: trackable} of the weights and BN statistics, named as a checkpoint of
        the whole net names them (no dropout generator; no classifier unless `head`), so that a
        tf.train.Checkpoint of them restores those parts of a checkpoint of ours."""
        parts = {"stem_conv": self.stem_conv, "stem_bn": self.stem_bn,
                 "dense_blocks": self.dense_blocks, "transitions": self.transitions,
                 "head_bn": self.head_bn}
        if head:
            parts["classifier"] = self.classifier
        return parts


def build_densenet(name, *, num_classes=1000, **options):
    if name not in CONFIGS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(CONFIGS)} "
                         f"or 'densenet' with blocks, growth_rate and stem_filters")
    blocks, growth_rate, stem_filters = CONFIGS[name]
    return DenseNet(blocks, growth_rate, stem_filters, num_classes=num_classes, name=name,
                    **options)
