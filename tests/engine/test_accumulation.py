"""--grad_accum_steps: N micro-batches of batch/N give the step of one batch (on a model
without batch norm), all-reduced once per optimizer step."""
import json
import os
import sys

import numpy as np
import pytest

from tests import helpers

pytestmark = pytest.mark.smoke
PROBE = os.path.join(os.path.dirname(__file__), "accumulation_probe.py")
HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")


def compare(out_dir, ranks):
    for rank in range(ranks):
        got = dict(np.load(out_dir / f"rank{rank}.npz"))
        assert int(got["size"]) == ranks and list(got["steps"]) == [3, 3]
        for i in range(2):
            plain, accumulated = got[f"plain_{i}"], got[f"accumulated_{i}"]
            assert np.abs(plain).max() > 0.01  # trained, not still at zero
            np.testing.assert_allclose(accumulated, plain, rtol=1e-6, atol=1e-7)


def test_four_micro_batches_equal_one_batch(tmp_path):
    helpers.run_checked([sys.executable, PROBE, str(tmp_path)], timeout=300)
    compare(tmp_path, 1)


def test_four_micro_batches_equal_one_batch_on_two_workers(tmp_path):
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, PROBE, str(tmp_path)], timeout=300)
    compare(tmp_path, 2)


def test_one_gradient_allreduce_per_optimizer_step(tmp_path):
    """Horovod's timeline of 3 optimizer steps of 4 micro-batches: the gradient group (kernel
    and bias) is reduced 3 times, not 12."""
    timeline = tmp_path / "timeline.json"
    helpers.run_checked([HOROVODRUN, "-np", "2", "-H", "localhost:2", "--gloo",
                         sys.executable, PROBE, str(tmp_path), "accumulated"], timeout=300,
                        env={"HOROVOD_TIMELINE": str(timeline)})
    text = timeline.read_text().strip().rstrip(",")
    events = json.loads(text + ("]" if not text.endswith("]") else ""))
    names = {e["args"]["name"]: e["pid"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name" and "name" in e["args"]}
    reductions = {}
    for event in events:
        if event.get("ph") == "B" and event.get("name") in ("ALLREDUCE", "NEGOTIATE_ALLREDUCE"):
            reductions.setdefault(event["pid"], []).append(event["name"])
    gradient_tensors = [name for name in names if "allreduce" in name.lower()]
    assert len(gradient_tensors) == 2, names  # the kernel's and the bias's gradient
    for name in gradient_tensors:
        assert reductions[names[name]].count("ALLREDUCE") == 3, (name, reductions)


def test_moving_statistics_move_once_towards_the_micro_batches_mean():
    """4 micro-batches, dropout on: the step moves every BN moving statistic once, towards the
    mean of the micro-batches' own statistics (what W workers x N micro-batches give for any W,
    once the workers' statistics are averaged); the micro-batches' dropout masks are those of
    keys (seed, step, slot): forward passes given those keys reproduce the statistics."""
    import tensorflow as tf

    import nets
    from engine import distributed, optimizers
    from engine.step import TrainStep
    net = nets.build("densenet", num_classes=4, blocks=(1, 1), growth_rate=4, stem_filters=8,
                     seed=3, dropout_rate=0.3)
    step = TrainStep(net=net, optimizer=optimizers.build("sgd"),
                     backend=distributed.SingleProcess(), lr_fn=lambda s: tf.constant(0.0),
                     micro_batches=4, seed=11)
    step.build()
    images = tf.random.stateless_uniform([8, 32, 32, 3], (1, 2))
    labels = tf.constant([0, 1, 2, 3, 0, 1, 2, 3])
    before = [v.numpy() for v in net.moving_statistics()]
    micro = [net.forward(images[2 * i:2 * i + 2], training=True,
                         dropout_key=tf.random.experimental.stateless_fold_in(
                             tf.constant([11, 0], tf.int64), tf.constant(i, tf.int64)))[1]
             for i in range(4)]
    step(images, labels)
    momentum = net.statistics_momentum
    for k, (variable, start) in enumerate(zip(net.moving_statistics(), before)):
        mean = np.mean([m[k].numpy() for m in micro], axis=0)
        np.testing.assert_allclose(variable.numpy(), momentum * start + (1 - momentum) * mean,
                                   rtol=1e-5, atol=1e-7)
