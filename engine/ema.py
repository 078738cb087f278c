"""An exponential moving average of a net's weights and batch-norm moving statistics.

    average <- decay * average + (1 - decay) * value,  decay = min(D, (1 + t) / (10 + t))

after each optimizer step, t being the number of updates applied before it (TF's
ExponentialMovingAverage with num_updates): early averages follow the weights closely, so their
starting value hardly matters. Averages are float32 variables that checkpoints hold (`ema/`).
"""
import contextlib

import tensorflow as tf


class WeightEma(tf.Module):
    # The net's variables are the net's: neither walked as ours nor tracked by checkpoints.
    _TF_MODULE_IGNORED_PROPERTIES = frozenset(("_sources",)) | \
        tf.Module._TF_MODULE_IGNORED_PROPERTIES

    def __init__(self, net, decay: float):
        super().__init__(name="ema")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.__dict__["_sources"] = net.trainable_variables_in_order() + net.moving_statistics()
        self.num_statistics = len(net.moving_statistics())
        with tf.name_scope("ema"):
            self.averages = [tf.Variable(v.read_value(), trainable=False,
                                         name=v.name.split(":")[0]) for v in self._sources]

    def statistics_averages(self):
        """The averages of the BN moving statistics (they differ between workers)."""
        return self.averages[len(self.averages) - self.num_statistics:]

    def reset(self):
        """Averages equal to the net's current values (a fresh run, after the broadcast)."""
        for average, source in zip(self.averages, self._sources):
            average.assign(source)

    def update(self, updates_before):
        """One step of the average; updates_before: int64 count of optimizer steps before it."""
        t = tf.cast(updates_before, tf.float32)
        decay = tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + t) / (10.0 + t))
        for average, source in zip(self.averages, self._sources):
            average.assign_sub((1.0 - decay) * (average - source))

    @contextlib.contextmanager
    def swapped_in(self):
        """Within the block, the net computes with the averages; its own values come back."""
        own = [tf.identity(v.read_value()) for v in self._sources]
        self.copy_to_net()
        try:
            yield
        finally:
            for source, value in zip(self._sources, own):
                source.assign(value)

    def copy_to_net(self):
        for average, source in zip(self.averages, self._sources):
            source.assign(average)
