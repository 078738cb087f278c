"""conv_floor: a ceiling for any training step built on TF's kernels: every convolution of one
training step (forward, backprop-filter, backprop-input; read from the traced graph of the net)
timed alone, one shape at a time, and summed. Everything else (batch norm, ReLU, concatenation,
the update) only adds to it, so batch_size / floor_seconds is the img/s that no engine, ours or
Keras, can pass on this machine with these kernels."""
import statistics
import time

from launch.plan import COMPUTE_DTYPES


def run(*, model, batch_size, image_size, dtype, steps):
    import tensorflow as tf

    import nets

    compute = tf.as_dtype(COMPUTE_DTYPES[dtype])
    size, batch = image_size, batch_size
    net = nets.build(model, compute_dtype=COMPUTE_DTYPES[dtype])
    graph = tf.function(lambda x: net(x, training=True)).get_concrete_function(
        tf.TensorSpec([batch, size, size, 3], tf.float32)).graph
    convs = {}  # (input shape, kernel shape, strides, padding) -> count
    for op in graph.get_operations():
        if op.type == "Conv2D":
            key = (tuple(op.inputs[0].shape), tuple(op.inputs[1].shape),
                   tuple(op.get_attr("strides")), op.get_attr("padding").decode())
            convs[key] = convs.get(key, 0) + 1

    def median_seconds(fn, *args):
        fn(*args)  # trace + warm-up
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            fn(*args).numpy()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    totals = {"forward": 0.0, "backprop_filter": 0.0, "backprop_input": 0.0}
    for (x_shape, k_shape, strides, padding), count in convs.items():
        x = tf.cast(tf.random.uniform(x_shape, -1, 1), compute)
        kernel = tf.cast(tf.random.uniform(k_shape, -0.1, 0.1), compute)
        grad = tf.ones_like(tf.nn.conv2d(x, kernel, strides, padding))
        forward = tf.function(lambda x, k: tf.nn.conv2d(x, k, strides, padding))
        by_filter = tf.function(lambda x, g: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=k_shape, out_backprop=g, strides=strides, padding=padding))
        by_input = tf.function(lambda k, g: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=x_shape, filter=k, out_backprop=g, strides=strides, padding=padding))
        totals["forward"] += count * median_seconds(forward, x, kernel)
        totals["backprop_filter"] += count * median_seconds(by_filter, x, grad)
        if x_shape[-1] != 3:  # the images need no gradient
            totals["backprop_input"] += count * median_seconds(by_input, kernel, grad)
    floor = sum(totals.values())
    return {"mode": "conv_floor", "model": model, "batch_size": batch, "image_size": size,
            "dtype": dtype, "tf": tf.__version__, "distinct_convs": len(convs),
            "convs": sum(convs.values()),
            "seconds_per_step": {k: round(v, 3) for k, v in totals.items()},
            "floor_seconds_per_step": round(floor, 3),
            "ceiling_images_per_sec": round(batch / floor, 2)}
