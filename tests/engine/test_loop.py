"""The loop in-process (as orbit's controller_test): a 2-block net on synthetic data, driven by
engine.Trainer directly. Cadence, chunking, checkpoint and evaluation points, resume, stop
requests and the non-finite guard, each checked against counts worked out independently."""
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

import input as inputs
import nets
from engine import (
    NonFiniteLoss,
    StopRequested,
    TrainConfig,
    Trainer,
    TrainStep,
    cadence,
    distributed,
    optimizers,
)

pytestmark = pytest.mark.smoke
BATCH = 4


def brute_force_boundary(step, limit, every, at):
    """The first step after `step` where any event falls, found by walking step by step."""
    for s in range(step + 1, limit + 1):
        if any(p and s % p == 0 for p in every) or s in at:
            return s
    return limit


@pytest.mark.parametrize("every, at", [((3, None, 5), ()), ((4,), (6, 9)), ((None,), (2,)),
                                       ((7, 2), (1, 20))])
def test_next_boundary_matches_a_step_by_step_walk(every, at):
    for step in range(0, 25):
        for limit in range(step + 1, 30, 4):
            assert cadence.next_boundary(step, limit=limit, every=every, at=at) == \
                brute_force_boundary(step, limit, every, at), (step, limit)


def test_itstime():
    assert [s for s in range(1, 13) if cadence.itstime(s, 4, last=10)] == [4, 8, 10, 12]
    assert not any(cadence.itstime(s, None, last=10) for s in range(1, 13))
    assert not any(cadence.itstime(s, 0) for s in range(1, 13))


class Batches:
    """A stand-in input module: the synthetic module's data, with NaN images from
    `nan_from_step` on (0-based)."""

    def __init__(self, nan_from_step=None):
        self.inner = inputs.build("synthetic", image_size=32, num_classes=4,
                                  num_train_examples=1000, num_val_examples=10)
        self.nan_from_step = nan_from_step
        self.num_classes = 4

    def train_dataset(self, batch_size, *, worker=0, workers=1, seed=0, start_example=0,
                      micro_batches=1):
        data = self.inner.train_dataset(batch_size, seed=seed, micro_batches=micro_batches)
        if self.nan_from_step is None:
            return data
        first = start_example // batch_size
        poisoned = tf.data.Dataset.range(first, 2**62)
        return tf.data.Dataset.zip((data, poisoned)).map(
            lambda batch, step: (tf.where(step >= self.nan_from_step, np.nan, batch[0]),
                                 batch[1]))

    def eval_dataset(self, batch_size, **kwargs):
        return self.inner.eval_dataset(batch_size, **kwargs)

    def eval_batches(self, batch_size, workers=1):
        return self.inner.eval_batches(batch_size, workers)


class CountingStep:
    """Wraps a TrainStep and records the size of every call: 1 per single step, k per loop."""

    def __init__(self, inner, on_call=None):
        self.inner, self.calls, self.on_call = inner, [], on_call

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, images, labels):
        self.calls.append(1)
        self.inner(images, labels)
        if self.on_call:
            self.on_call(sum(self.calls))

    def loop(self, iterator, steps):
        self.calls.append(int(steps))
        self.inner.loop(iterator, steps)
        if self.on_call:
            self.on_call(sum(self.calls))


def make_trainer(model_dir, data=None, on_call=None, **config):
    net = nets.build("densenet", num_classes=4, blocks=(2, 2), growth_rate=4, stem_filters=8,
                     seed=3)
    optimizer = optimizers.build("sgd")
    step = CountingStep(TrainStep(net=net, optimizer=optimizer,
                                  backend=distributed.SingleProcess(),
                                  lr_fn=lambda s: tf.constant(0.05), weight_decay=1e-4),
                        on_call)
    options = dict(model_dir=str(model_dir), batch_size=BATCH, epochs=2, steps_per_epoch=5,
                   log_steps=100, seed=1)
    options.update(config)
    return Trainer(train_step=step, data=data or Batches(), backend=distributed.SingleProcess(),
                   config=TrainConfig(**options), log=lambda *a, **k: None)


def records(model_dir, split):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def checkpoint_steps(model_dir):
    state = tf.train.get_checkpoint_state(os.path.join(model_dir, "checkpoints"))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]


def test_events_fall_where_cadence_says(tmp_path):
    """5 steps an epoch, 2 epochs: logs every 2 and at epoch ends, checkpoints every 3 and at
    epoch ends, summaries every 4 (logged too), evaluation at epoch ends."""
    trainer = make_trainer(tmp_path, log_steps=2, checkpoint_steps=3, save_summary_steps=4,
                           keep_checkpoints=10, validation_steps=None, steps_per_loop=1)
    summary = trainer.train()
    assert summary["steps"] == 10
    assert [r["step"] for r in records(tmp_path, "train")] == [2, 4, 5, 6, 8, 10]
    assert [r["step"] for r in records(tmp_path, "validation")] == [5, 10]
    assert [r["examples"] for r in records(tmp_path, "validation")] == [10, 10]
    assert checkpoint_steps(tmp_path) == [3, 5, 6, 9, 10]
    assert trainer.train_step.calls == [1] * 10


def test_validation_freq_evaluates_every_nth_epoch_and_the_last_with_precise_bn_only_then(
        tmp_path):
    """validation_freq=2 over 5 epochs: evaluations (and the precise-BN recomputation that
    precedes them) after epochs 2, 4 and 5; a checkpoint after every epoch. Resumed after
    epoch 3 (the first run's last, so evaluated), the second run evaluates epochs 4 and 5 only."""
    def run(model_dir, epochs):
        trainer = make_trainer(model_dir, epochs=epochs, validation_freq=2, precise_bn_batches=1,
                               keep_checkpoints=10)
        recomputed, recompute = [], trainer.evaluator.recompute_statistics
        trainer.evaluator.recompute_statistics = \
            lambda step: recomputed.append(step // 5) or recompute(step)
        trainer.train()
        return recomputed

    assert run(tmp_path / "straight", 5) == [2, 4, 5]
    assert [r["epoch"] for r in records(tmp_path / "straight", "validation")] == [2, 4, 5]
    assert checkpoint_steps(tmp_path / "straight") == [5, 10, 15, 20, 25]
    assert run(tmp_path / "resumed", 3) == [2, 3]
    assert run(tmp_path / "resumed", 5) == [4, 5]
    assert [r["epoch"] for r in records(tmp_path / "resumed", "validation")] == [2, 3, 4, 5]


def test_steps_per_loop_chunks_stop_at_every_event(tmp_path):
    """steps_per_loop=4, logs every 3, 5-step epochs: after the first 4 steps, one per call
    (hooks.StepTimer times them), a chunk ends at the first of a log step, the epoch's end, or 4
    steps: 4-5 (epoch end), 5-6 (log), 6-9 (log), 9-10."""
    trainer = make_trainer(tmp_path, log_steps=3, steps_per_loop=4)
    trainer.train()
    ends = np.cumsum(trainer.train_step.calls).tolist()
    assert ends == [1, 2, 3, 4, 5, 6, 9, 10]
    assert [r["step"] for r in records(tmp_path, "train")] == [3, 5, 6, 9, 10]


def test_resume_in_a_new_trainer_continues_exactly(tmp_path):
    straight = make_trainer(tmp_path / "straight", validation_steps=0)
    straight.train()
    first = make_trainer(tmp_path / "resumed", validation_steps=0, epochs=1)
    first.train()
    second = make_trainer(tmp_path / "resumed", validation_steps=0)
    second.train()
    assert second.train_step.calls == [1] * 5  # only the second epoch ran
    for a, b in zip(straight.train_step.net.variables, second.train_step.net.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.name)
    assert int(second.train_step.optimizer.iterations.numpy()) == 10


def test_stop_request_is_honoured_at_the_next_boundary(tmp_path):
    """SIGTERM after step 6 with logs every 4, one step per call: the workers agree at the
    next boundary, step 8, and checkpoint there (5 is the epoch's end)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def stop_after_six(done):
        if done == 6:
            os.kill(os.getpid(), signal.SIGTERM)
    try:
        trainer = make_trainer(tmp_path, on_call=stop_after_six, validation_steps=0,
                               log_steps=4, steps_per_loop=1)
        with pytest.raises(StopRequested) as stopped:
            trainer.train()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert stopped.value.args[0] == 8
    assert checkpoint_steps(tmp_path) == [5, 8]


def test_nonfinite_step_is_named_at_the_boundary_and_nothing_after_it_applied(tmp_path):
    """NaN images from step 7 on, logs every 10: the run stops at the boundary (step 10) naming
    step 7, with the weights and BN statistics of an uninterrupted 6-step run: neither step 7
    nor steps 8-10 were applied."""
    reference = make_trainer(tmp_path / "six", validation_steps=0, epochs=1, steps_per_epoch=6)
    reference.train()
    trainer = make_trainer(tmp_path / "nan", data=Batches(nan_from_step=6), validation_steps=0,
                           epochs=1, steps_per_epoch=20, log_steps=10)
    with pytest.raises(NonFiniteLoss, match="at step 7;"):
        trainer.train()
    assert sum(trainer.train_step.calls) == 10  # it ran on to the boundary
    assert int(trainer.train_step.optimizer.iterations.numpy()) == 6
    for a, b in zip(reference.train_step.net.variables, trainer.train_step.net.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7, err_msg=a.name)
    assert not os.path.exists(tmp_path / "nan" / "checkpoints" / "checkpoint")


def test_device_is_read_only_at_event_boundaries(tmp_path, monkeypatch):
    """100 steps, logs every 50, one epoch, one step per call. Between two steps that are not
    at a boundary the host reads nothing back from the device (the old loop read the finite
    flag after every step); at a boundary, at most 2 reads through the loop's read point (the
    finite flag, the metric sums). The boundaries: steps 1-4, which hooks.StepTimer times (one read
    more: the agreed step time), and the 2 logs; the stop agreement runs at those 6 only (the
    stop cadence of this step, milliseconds long, is far beyond 100 steps)."""
    from engine import observe
    reads, agreements, conversions, after_step = [], [], [], []
    real_to_host = observe.to_host
    monkeypatch.setattr(observe, "to_host", lambda values: reads.append(len(values)) or
                        real_to_host(values))
    trainer = make_trainer(tmp_path, validation_steps=0, epochs=1, steps_per_epoch=100,
                           log_steps=50, steps_per_loop=1,
                           on_call=lambda done: after_step.append(len(conversions)))
    real_any = trainer.backend.any
    trainer.backend.any = lambda flag: agreements.append(flag) or real_any(flag)
    # Independently of our read point: every eager tensor's conversion to a host value (numpy(),
    # float(), np.asarray) goes through this one method of TensorFlow's.
    eager_tensor = type(tf.constant(0.0))
    real_numpy = getattr(eager_tensor, "_numpy")
    monkeypatch.setattr(eager_tensor, "_numpy",
                        lambda tensor: conversions.append(1) or real_numpy(tensor))
    trainer.train()
    assert len(after_step) == 100
    between = {k + 1: after_step[k + 1] - after_step[k] for k in range(99)}
    assert {step for step, count in between.items() if count} == {1, 2, 3, 4, 50}, between
    assert len(reads) <= 2 * 2 + 1 + 4 + 1, reads
    assert len(agreements) == 6
    assert [r["step"] for r in records(tmp_path, "train")] == [50, 100]


def test_jit_compiled_loop_trains_as_the_plain_one():
    """steps_per_loop's loop calls the XLA-compiled step: the same 3 steps on the same data."""
    results = []
    for jit in (False, True):
        net = nets.build("densenet", num_classes=4, blocks=(2,), growth_rate=4, stem_filters=8,
                         seed=3)
        optimizer = optimizers.build("sgd")
        step = TrainStep(net=net, optimizer=optimizer, backend=distributed.SingleProcess(),
                         lr_fn=lambda s: tf.constant(0.05), jit_compile=jit)
        optimizer.build(step.variables)
        data = inputs.build("synthetic", image_size=32, num_classes=4, num_val_examples=4)
        step.loop(iter(data.train_dataset(BATCH, seed=1)), tf.constant(3))
        results.append([v.numpy() for v in net.variables])
        assert int(optimizer.iterations.numpy()) == 3
    for plain, jitted in zip(*results):
        np.testing.assert_allclose(jitted, plain, rtol=1e-4, atol=1e-5)


def test_progress_rate_and_eta_count_this_process_steps_after_a_resume(monkeypatch):
    """Resumed at step 50 of 100, 10 steps in 2 s: 5 steps/s (20 img/s at batch 4), ETA 8 s;
    dividing the absolute step by the elapsed time would say 30 steps/s."""
    import io

    from engine.hooks import ProgressLine
    from engine.hooks import train_log as train_log_module
    from engine.observe import Console
    now = [100.0]
    monkeypatch.setattr(train_log_module.time, "perf_counter", lambda: now[0])
    out = io.StringIO()
    progress = ProgressLine(total_steps=100, global_batch=BATCH,
                            train_log=type("Log", (), {"last_loss": None})(),
                            console=Console(out=out))
    progress.begin(50)
    now[0] += 2.0
    progress.after_steps(60)
    line = out.getvalue()
    rate = float(line.split("|")[1].split("img/s")[0])
    assert rate == pytest.approx(20.0, rel=0.05)
    assert "ETA 0:08" in line or "ETA 0:07" in line
