"""A model without batch norm that implements engine.model.Model and nothing more: what a test
needs when batch statistics would make two ways of computing one step differ (gradient
accumulation), and the proof that the engine needs no more of a net than that protocol."""
import tensorflow as tf


class Linear(tf.Module):
    """Softmax regression on flattened images: logits = flatten(x) @ kernel + bias."""

    def __init__(self, features, num_classes, seed=0):
        super().__init__(name="linear")
        self.num_classes = num_classes
        self.kernel = tf.Variable(tf.random.stateless_normal([features, num_classes], (seed, 1),
                                                             stddev=0.05), name="kernel")
        self.bias = tf.Variable(tf.zeros([num_classes]), name="bias")

    statistics_momentum = 0.0  # no moving statistics to move

    def forward(self, images, *, training, dropout=True, dropout_key=None):
        del training, dropout, dropout_key
        flat = tf.reshape(images, [tf.shape(images)[0], -1])
        return flat @ self.kernel + self.bias, ()

    def __call__(self, images, training=False):
        return self.forward(images, training=training)[0]

    def moved_statistics(self, batch_statistics, moving=None):
        return ()

    def moving_statistics(self):
        return []

    def trainable_variables_in_order(self):
        return [self.kernel, self.bias]

    def variables_by_role(self):
        return {"kernels": [self.kernel], "biases": [self.bias], "normalization": []}

    def checkpoint_parts(self, *, head=True):
        return {"kernel": self.kernel, "bias": self.bias} if head else {}
