"""A model without batch norm that engine.TrainStep accepts: what a test needs when batch
statistics would make two ways of computing one step differ (gradient accumulation)."""
import tensorflow as tf


class Linear(tf.Module):
    """Softmax regression on flattened images: logits = flatten(x) @ kernel + bias."""

    def __init__(self, features, num_classes, seed=0):
        super().__init__(name="linear")
        self.num_classes = num_classes
        self.kernel = tf.Variable(tf.random.stateless_normal([features, num_classes], (seed, 1),
                                                             stddev=0.05), name="kernel")
        self.bias = tf.Variable(tf.zeros([num_classes]), name="bias")

    def forward(self, images, *, training):
        del training
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        return flat @ self.kernel + self.bias, []

    def __call__(self, images, training=False):
        return self.forward(images, training=training)[0]

    def update_moving_statistics(self, stat_updates):
        del stat_updates

    def trainable_variables_in_order(self):
        return [self.kernel, self.bias]

    def moving_statistics(self):
        return []

    def batch_norms(self):
        return []

    def kernels(self):
        return [self.kernel]

    def biases(self):
        return [self.bias]

    def bn_parameters(self):
        return []
