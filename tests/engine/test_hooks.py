"""The controller and each of its hooks in-process, with the stand-in net (engine.model.Model's
smallest implementation, tests/engine/standins.py): each hook's cadence against a step-by-step
walk, and its effect against values computed another way (numpy, files read back by
TensorFlow's and TensorBoard's own readers)."""
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

import input as inputs
from engine import (
    Controller,
    Hook,
    SingleStep,
    StopRequested,
    TrainConfig,
    Trainer,
    TrainStep,
    distributed,
    model,
    optimizers,
)
from engine.hooks import PeriodicCheckpoint
from engine.tensor_dumps import TensorDumps
from tests.engine.standins import Linear

pytestmark = pytest.mark.smoke
BATCH, SIZE, CLASSES = 4, 8, 3


# -- the controller ----------------------------------------------------------------------------
class Periodic(Hook):
    """Due every `every` steps; remembers where it ran."""

    def __init__(self, every, rides_along=False):
        self.every, self.rides_along, self.ran = every, rides_along, []

    def next_boundary(self, step):
        return (step // self.every + 1) * self.every if self.every else None

    def at_boundary(self, step):
        self.ran.append(step)


class Window(Hook):
    def __init__(self, start, end):
        self.start, self.end_step, self.ends = start, end, []

    def next_boundary(self, step):  # its edges, so that no call runs across them
        edges = [e for e in (self.start, self.end_step) if e > step]
        return min(edges) if edges else None

    def single_step(self, step):
        return SingleStep() if self.start <= step < self.end_step else None

    def end(self, step):
        self.ends.append(step)


def drive(hooks, *, total, per_call, nonfinite=lambda: -1):
    calls = []
    controller = Controller(run_steps=lambda step, n, single: calls.append((step, n)), hooks=hooks,
                            total_steps=total, steps_per_call=per_call,
                            first_nonfinite_step=nonfinite)
    return controller.train(0), calls


@pytest.mark.parametrize("periods, per_call", [((3, 5), 4), ((4,), 1), ((7, 2), 10)])
def test_controller_stops_at_each_hooks_boundary_and_runs_only_the_due(periods, per_call):
    hooks = [Periodic(p) for p in periods]
    last, calls = drive(hooks, total=23, per_call=per_call)
    assert last == 23
    # Walked step by step: a call ends at the first multiple of a period, per_call steps, or
    # the end, whichever comes first.
    expected, step = [], 0
    while step < 23:
        end = step + 1
        while end < 23 and end - step < per_call and not any(end % p == 0 for p in periods):
            end += 1
        expected.append((step, end - step))
        step = end
    assert calls == expected
    for hook, period in zip(hooks, periods):
        assert hook.ran == [s for s in range(1, 24) if s % period == 0]


def test_a_riding_hook_runs_only_where_another_hook_is_due():
    every_five, rider = Periodic(5), Periodic(None, rides_along=True)
    drive([every_five, rider], total=12, per_call=3)
    assert rider.ran == every_five.ran == [5, 10]


def test_a_window_runs_its_steps_one_per_call_and_ends_once():
    window = Window(4, 7)
    _, calls = drive([Periodic(10), window], total=12, per_call=6)
    assert calls == [(0, 4), (4, 1), (5, 1), (6, 1), (7, 3), (10, 2)]
    assert window.ends == [12]


@pytest.mark.parametrize("seconds_per_step, fixed, stop_every, per_call", [
    (2.0, None, 7, 1),            # 0.75 x 20 s / 2 s = 7.5 steps between stop checks
    (1 / 16, None, 240, 16),      # 15 s / (1/16 s); a call of about 1 s: 16 steps
    (1 / 1024, None, 15360, 100),  # per call capped at 100
    (1 / 16, 8, 240, 8),          # a fixed steps_per_loop is kept
])  # (times that binary floats hold exactly)
def test_pace_times_the_first_steps_then_sets_stop_checks_and_steps_per_call(
        monkeypatch, seconds_per_step, fixed, stop_every, per_call):
    """A fake clock advanced by the steps' time: the StepTimer runs steps 1-4 one per call, each
    a boundary, times steps 2-4 (step 1 traces), has the workers agree on their mean; then
    StopChecks makes a boundary every `stop_every` steps (the stop check rides on them) and sets
    the steps per call; the stop hook is checked at exactly those boundaries."""
    from engine.hooks import pace as pace_module
    now = [0.0]
    monkeypatch.setattr(pace_module.time, "perf_counter", lambda: now[0])
    agreed = []
    timer = pace_module.StepTimer(agree=lambda s: agreed.append(s) or s * 1.0)
    checks = pace_module.StopChecks(timer=timer, stop_within=20, steps_per_call=fixed)
    rider = Periodic(None, rides_along=True)
    calls = []

    def run_steps(step, count, single):
        calls.append((step, count))
        now[0] += count * seconds_per_step + (30.0 if step == 0 else 0.0)  # step 1 traces
    total = 4 + 2 * stop_every + 3
    Controller(run_steps=run_steps, hooks=[timer, checks, rider], total_steps=total,
               steps_per_call=checks.steps_per_call, first_nonfinite_step=lambda: -1).train(0)
    assert calls[:4] == [(0, 1), (1, 1), (2, 1), (3, 1)]
    assert agreed == [pytest.approx(seconds_per_step)]
    assert checks.stop_every == stop_every and checks.steps_per_call() == per_call
    assert rider.ran == [1, 2, 3, 4, 4 + stop_every, 4 + 2 * stop_every]
    later = calls[4:]
    assert all(count <= per_call for _, count in later)
    assert sum(count for _, count in later) == total - 4


def test_a_nonfinite_step_stops_at_the_boundary_before_any_due_hook_runs():
    hook = Periodic(4)
    with pytest.raises(Exception, match="at step 3;"):
        drive([hook], total=8, per_call=2, nonfinite=lambda: 2)
    assert hook.ran == []


# -- hooks on a real run of the stand-in net -------------------------------------------------
def synthetic():
    return inputs.build("synthetic", image_size=SIZE, num_classes=CLASSES,
                        num_train_examples=1000, num_val_examples=6)


def make_trainer(model_dir, *, lr=0.05, tensor_dumps=None, data=None, log=lambda *a, **k: None,
                 out=None, **config):
    net = Linear(SIZE * SIZE * 3, CLASSES, seed=2)
    assert isinstance(net, model.Model)  # the stand-in implements the declared contract
    step = TrainStep(net=net, optimizer=optimizers.build("sgd"),
                     backend=distributed.SingleProcess(), lr_fn=lambda s: tf.constant(lr))
    options = dict(model_dir=str(model_dir), batch_size=BATCH, epochs=2, steps_per_epoch=5,
                   log_steps=100, seed=1, validation_steps=0)
    options.update(config)
    return Trainer(train_step=step, data=data or synthetic(),
                   backend=distributed.SingleProcess(), config=TrainConfig(**options),
                   tensor_dumps=tensor_dumps, log=log, out=out)


def records(model_dir, split):
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def numpy_metrics(kernel, bias, images, labels):
    """Mean softmax cross-entropy and top-1 of the linear model, in float64."""
    logits = images.reshape(len(images), -1).astype(np.float64) @ kernel + bias
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return (-log_p[np.arange(len(labels)), labels].mean(),
            float(np.mean(np.argmax(logits, axis=1) == labels)))


def test_train_log_records_each_interval_and_epoch_end_with_the_intervals_mean(tmp_path):
    """lr 0: the weights stay as built and the synthetic batch repeats, so every step's loss is
    numpy's cross-entropy of that batch. Logs every 3 steps and at epoch ends (5-step epochs),
    TensorBoard scalars every 4 and at epoch ends, read back by TensorBoard's reader."""
    from tests.launch.test_recipes import read_events
    trainer = make_trainer(tmp_path, lr=0.0, log_steps=3, save_summary_steps=4)
    trainer.train()
    net = trainer.train_step.net
    images, labels = next(iter(synthetic().train_dataset(BATCH, seed=1)))
    loss, top1 = numpy_metrics(net.kernel.numpy(), net.bias.numpy(), images.numpy(),
                               labels.numpy())
    logged = records(tmp_path, "train")
    assert [r["step"] for r in logged] == [3, 4, 5, 6, 8, 9, 10]
    for r in logged:
        assert r["loss"] == pytest.approx(loss, rel=1e-5) and r["top1"] == pytest.approx(top1)
        assert r["lr"] == 0.0 and r["images_per_sec"] > 0
    scalars = read_events(tmp_path / "train")
    assert len(scalars["loss"]) == 4  # steps 4, 5, 8, 10
    np.testing.assert_allclose(scalars["loss"], loss, rtol=1e-5)


class Capture(Hook):
    """Every `every` steps, the net's values as the loop has them at that boundary."""

    def __init__(self, net, every):
        self.net, self.every, self.values = net, every, {}

    def next_boundary(self, step):
        return (step // self.every + 1) * self.every

    def at_boundary(self, step):
        self.values[step] = [v.numpy().copy() for v in self.net.trainable_variables_in_order()]


def test_periodic_checkpoint_holds_the_weights_of_its_step(tmp_path):
    """Checkpoints every 3 steps and at epoch ends; each file, read by TensorFlow's checkpoint
    reader, holds the weights that the loop had at that step."""
    trainer = make_trainer(tmp_path, checkpoint_steps=3, keep_checkpoints=10)
    capture = Capture(trainer.train_step.net, 1)
    trainer.train(hooks=[capture])
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    steps = [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths]
    assert steps == [3, 5, 6, 9, 10]
    for path, step in zip(state.all_model_checkpoint_paths, steps):
        reader = tf.train.load_checkpoint(path)
        kernel = reader.get_tensor("net/kernel/.ATTRIBUTES/VARIABLE_VALUE")
        np.testing.assert_array_equal(kernel, capture.values[step][0])
        assert reader.get_tensor("optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE") == step
    assert not np.array_equal(capture.values[3][0], capture.values[6][0])  # it trained


def test_periodic_checkpoint_cadence_leaves_epoch_ends_to_the_epoch_hook():
    saved = []
    hook = PeriodicCheckpoint(every=2, steps_per_epoch=5, save=saved.append)
    for step in range(1, 11):
        if hook.due(step):
            hook.at_boundary(step)
    assert saved == [2, 4, 6, 8]  # 10 is an epoch's end


def test_stop_hook_restores_the_signal_handlers_whether_training_ends_or_stops(tmp_path):
    def mine(signum, frame):
        pass
    previous = [signal.signal(s, mine) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        make_trainer(tmp_path / "a", epochs=1).train()
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine

        class Kill(Hook):  # the signal comes while steps 6-8 run in one call
            def before_steps(self, step):
                if step == 5:
                    os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(StopRequested) as stopped:
            make_trainer(tmp_path / "b", log_steps=4).train(hooks=[Kill()])
        assert stopped.value.args[0] == 8  # the next boundary (a log)
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
    finally:
        for sig, handler in zip((signal.SIGTERM, signal.SIGINT), previous):
            signal.signal(sig, handler)


def test_epoch_end_counts_the_epoch_checkpoints_and_evaluates_exactly(tmp_path):
    """Validation at both epoch ends over the 6 validation examples, its loss numpy's on the
    synthetic validation batch with the weights of that step; the epoch counter in the
    checkpoint written there."""
    trainer = make_trainer(tmp_path, validation_steps=None)
    capture = Capture(trainer.train_step.net, 5)
    summary = trainer.train(hooks=[capture])  # runs after EpochEnd at the same boundary
    evaluations = records(tmp_path, "validation")
    assert [(r["step"], r["epoch"], r["examples"]) for r in evaluations] == [(5, 1, 6),
                                                                            (10, 2, 6)]
    batches = list(synthetic().eval_dataset(BATCH))
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    real = np.concatenate([b[2].numpy() for b in batches]) == 1.0
    for r in evaluations:
        kernel, bias = capture.values[r["step"]]
        loss, top1 = numpy_metrics(kernel, bias, images[real], labels[real])
        assert r["loss"] == pytest.approx(loss, rel=1e-5) and r["top1"] == pytest.approx(top1)
    assert summary["validation_loss"] == pytest.approx(evaluations[-1]["loss"])
    for path, epoch in ((tmp_path / "checkpoints" / "ckpt-5", 1),
                        (tmp_path / "checkpoints" / "ckpt-10", 2)):
        assert tf.train.load_checkpoint(str(path)).get_tensor(
            "epoch/.ATTRIBUTES/VARIABLE_VALUE") == epoch


def test_progress_line_is_blanked_before_a_log_line_and_ended_with_training(tmp_path):
    """With the progress line on, the chief's console shows the status after every call, blanks
    it before each log line, and ends it on a line of its own."""
    import io
    out = io.StringIO()
    trainer = make_trainer(tmp_path, epochs=1, steps_per_epoch=4, progress=True, out=out,
                           log=lambda *a, **k: out.write(" ".join(map(str, a)) + "\n"))
    trainer.train()
    text = out.getvalue()
    assert text.count("\rstep ") == 4  # one status per call
    blank = "\r" + " " * 79 + "\r"
    assert blank + "checkpoint: " in text  # the epoch's checkpoint line, on a clean line
    assert "step 4/4" in text and text.endswith("\n")


class Calls(Hook):
    """Records the step count of each call (what the controller dispatched)."""

    def __init__(self):
        self.starts = []

    def before_steps(self, step):
        self.starts.append(step)


def test_profile_window_captures_its_steps_one_per_call_and_records_its_rate(tmp_path):
    calls = Calls()
    trainer = make_trainer(tmp_path, epochs=1, steps_per_epoch=12, steps_per_loop=12,
                           log_steps=12, profile_steps=(6, 9))
    trainer.train(hooks=[calls])
    # Steps 1-4 one per call (the StepTimer's), 5 alone, 6 (the one before the window) too.
    assert calls.starts == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    window = records(tmp_path, "profile")
    assert [(r["first_step"], r["step"]) for r in window] == [(7, 9)]
    assert window[0]["images_per_sec"] > 0
    captured = [f for _, _, files in os.walk(tmp_path / "train" / "plugins" / "profile")
                for f in files if f.endswith(".xplane.pb")]
    assert captured


def test_dump_window_checks_each_step_and_names_the_first_nonfinite_op(tmp_path):
    """NaN images from step 3 on, a dump window over steps 2-6: the run stops at step 3 (every
    step in the window is a boundary) naming an op of the train step."""
    class NanFrom:
        def __init__(self, inner, first):
            self.inner, self.first = inner, first

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def train_dataset(self, batch_size, **kwargs):
            numbered = tf.data.Dataset.zip((self.inner.train_dataset(batch_size, **kwargs),
                                            tf.data.Dataset.range(2**62)))
            return numbered.map(lambda batch, i: (
                tf.where(i >= self.first, np.nan, batch[0]), batch[1]))

    dumps = TensorDumps(str(tmp_path / "dumps"), window=(1, 6))
    calls = Calls()
    trainer = make_trainer(tmp_path, tensor_dumps=dumps, epochs=1, steps_per_epoch=10,
                           log_steps=10, data=NanFrom(synthetic(), 2))
    with pytest.raises(Exception, match=r"at step 3;.*first op whose output held NaN or Inf"):
        trainer.train(hooks=[calls])
    assert calls.starts == [0, 1, 2]
    assert not dumps.active  # written out on the way out
