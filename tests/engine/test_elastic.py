"""engine/elastic.py in one process: what a commit keeps and a restore brings back, which errors
the elastic loop turns into a reset (collective failures only, Horovod's own or the engine's
grouped all-reduce) and which it lets end the run, and the consolidation that leaves no share of
the run on one worker. Real worker changes: tests/launch/test_elastic.py."""
import numpy as np
import pytest
import tensorflow as tf
from horovod.common.exceptions import HostsUpdatedInterrupt

import nets
from engine import TrainStep, distributed, elastic, optimizers

pytestmark = pytest.mark.smoke


class Backend(distributed.SingleProcess):
    """One process that counts its resets."""

    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1


class PeerBackend(distributed.SingleProcess):
    """Rank 1 of 2 whose peer holds `peer` (a list of arrays, in the order of the calls'
    tensors): sum and average combine this worker's tensors with it."""

    rank, size, is_chief = 1, 2, False

    def __init__(self):
        self.peer = None

    def sum(self, tensors):
        return [t + p for t, p in zip(tensors, self.peer)]

    def average(self, tensors):
        return [(t + p) / 2 for t, p in zip(tensors, self.peer)]


def tiny_step(backend, seed=0):
    net = nets.build("densenet", num_classes=5, blocks=(2,), growth_rate=4, stem_filters=8,
                     seed=seed)
    step = TrainStep(net=net, optimizer=optimizers.build("sgd", momentum=0.9),
                     backend=backend, lr_fn=lambda s: tf.constant(0.1))
    step.build()
    return step


def batch(seed):
    return (tf.random.stateless_uniform([4, 32, 32, 3], (seed, 0), -1, 1),
            tf.random.stateless_uniform([4], (seed, 1), 0, 5, tf.int32))


def values_of(variables):
    return [v.numpy().copy() for v in variables]


def test_restore_brings_back_every_variable_of_the_last_commit():
    backend = Backend()
    step = tiny_step(backend)
    state = elastic.TrainingState(train_step=step, backend=backend, values={"elapsed": 0.0})
    names = {v.name for v in state.variables}
    assert any("iterations" in n for n in names) and any("momentum" in n for n in names)
    assert any("moving_mean" in n for n in names) and any("carried" in n for n in names)
    step(*batch(1))
    state.commit(elapsed=5.0)
    committed = values_of(state.variables)
    step(*batch(2))
    state.values["elapsed"] = 9.0
    assert not all(np.array_equal(a, b) for a, b in zip(committed, values_of(state.variables)))
    state.restore()
    for want, got in zip(committed, values_of(state.variables)):
        np.testing.assert_array_equal(got, want)
    assert state.values == {"elapsed": 5.0} and int(step.optimizer.iterations.numpy()) == 1


def test_building_again_keeps_the_optimizer_slots_the_state_holds():
    step = tiny_step(Backend())
    slots = step.optimizer.slot_variables()
    step(*batch(1))
    step.build()
    assert step.optimizer.slot_variables() == slots
    assert any(np.abs(s.numpy()).sum() > 0 for s in slots)


def collective_failure():
    """What a dead peer looks like from inside the engine's train step."""
    return tf.errors.UnknownError(
        None, None, "Graph execution error:\n\nDetected at node "
        "allreduce/HorovodGroupedAllreduce_while_3 defined at (most recent call last):\n"
        "Horovod has been shut down. This was caused by an exception on one of the ranks")


def run_with(*failures):
    """Runs a train function that moves a variable, then raises each of `failures` in turn
    (one per entry), then returns "done"; (result or raised error, backend, entries, the
    variable's value at each entry)."""
    backend = Backend()
    step = tiny_step(backend)
    state = elastic.TrainingState(train_step=step, backend=backend, values={})
    seen, pending = [], list(failures)
    sync = state.sync

    def counted_sync():
        backend.syncs = getattr(backend, "syncs", 0) + 1
        sync()
    state.sync = counted_sync

    def train(state):
        seen.append(float(step.optimizer.iterations.numpy()))
        step.optimizer.iterations.assign_add(10)  # work since the last commit
        if pending:
            raise pending.pop(0)
        return "done"
    try:
        result = elastic.run(train, state, backend=backend)
    except Exception as error:  # noqa: BLE001 - the test looks at what came out
        result = error
    return result, backend, seen


def test_a_collective_failure_restores_the_commit_and_meets_again():
    result, backend, seen = run_with(collective_failure(), collective_failure())
    assert result == "done" and backend.resets == 2 and backend.syncs == 3
    assert seen == [0.0, 0.0, 0.0]  # each entry starts from the commit


def test_a_change_of_hosts_meets_again_from_the_state_it_committed():
    """A removal too (skip_sync=True) is followed by a sync: Horovod's own loop skips it there,
    which deadlocks when the survivors waited below --min-np for a worker that then joins and
    syncs (horovod#3494)."""
    result, backend, seen = run_with(HostsUpdatedInterrupt(True))
    assert result == "done" and backend.resets == 1 and backend.syncs == 2
    # The interrupt comes from a commit, so the state is the committed one: kept, not undone.
    assert seen == [0.0, 10.0]


@pytest.mark.parametrize("error", [
    tf.errors.UnknownError(None, None, "the input pipeline failed: unknown image format"),
    tf.errors.InvalidArgumentError(None, None, "label 7 is out of range [0, 5)"),
    ValueError("a bug"),
], ids=["unknown_error_of_no_collective", "invalid_argument", "python_error"])
def test_any_other_error_ends_the_run_without_a_reset(error):
    """Horovod's own TensorFlow `run` returns None from an UnknownError that names none of its
    collectives; here it reaches the caller, which reports it."""
    result, backend, seen = run_with(error)
    assert result is error and backend.resets == 0 and seen == [0.0]


def test_a_collective_failure_is_recognized_by_its_horovod_op_and_named_by_that_line():
    assert distributed.is_collective_failure(collective_failure())
    assert not distributed.is_collective_failure(tf.errors.UnknownError(None, None, "disk"))
    assert not distributed.is_collective_failure(RuntimeError("Horovod"))
    assert elastic.first_line(collective_failure()) == \
        "Detected at node allreduce/HorovodGroupedAllreduce_while_3"


def test_consolidation_leaves_a_departing_worker_no_share_of_the_run():
    """Rank 1 of 2 consolidates with its peer: the BN statistics become the two workers'
    average and the partial metric sums their total, carried on this worker; if the peer then
    leaves, this worker alone reads the totals of both, and its statistics move on from the
    average as the pair's average would have."""
    backend = PeerBackend()
    step = tiny_step(backend)
    step(*batch(1))
    drifting = step.drifting_variables()
    partial = step.metrics.sums[:4]
    own = values_of(drifting)
    peer_drifting = [a * 0.5 + 0.25 for a in own]
    peer_sums = [np.float32(v) for v in (3.0, 1.0, 2.0, 4.0)]
    own_sums = values_of(partial)
    backend.peer = peer_drifting
    step.average_drifting_statistics()
    for v, a, b in zip(drifting, own, peer_drifting):
        np.testing.assert_allclose(v.numpy(), (a + b) / 2, rtol=1e-6)
    backend.peer = peer_sums
    step.metrics.carry_partial_sums(backend)
    assert all(float(v.numpy()) == 0.0 for v in partial)
    alone = distributed.SingleProcess()  # the peer left
    read = step.metrics.read_and_reset(alone)
    loss, top1, top5, examples = (float(a + b) for a, b in zip(own_sums, peer_sums))
    assert read["examples"] == examples
    assert read["loss"] == pytest.approx(loss / examples)
    assert read["top1"] == pytest.approx(top1 / examples)
    assert all(float(v.numpy()) == 0.0 for v in step.metrics.carried)


def test_a_worker_that_joins_a_lone_worker_takes_no_copy_of_its_partial_sums():
    """One worker commits mid-window (its partial sums of the steps since the last read), then a
    worker joins and takes the committed state (the sync broadcasts every state variable): the
    pair's next read counts those steps once, as the lone worker's own read would have."""
    alone = Backend()
    step = tiny_step(alone)
    step(*batch(1))
    step(*batch(2))
    loss, top1, _, examples = (float(v.numpy()) for v in step.metrics.sums[:4])
    state = elastic.TrainingState(train_step=step, backend=alone, values={})
    state.commit()
    # What the new worker receives: every state variable, by identity.
    joined = {id(v): v.numpy() for v in elastic.state_variables(step)}
    backend = PeerBackend()  # the lone worker is now rank 1 of 2; its peer holds `joined`
    backend.peer = [joined[id(v)] for v in step.metrics.sums]
    read = step.metrics.read_and_reset(backend)
    assert read["examples"] == examples == 8
    assert read["loss"] == pytest.approx(loss / examples, rel=1e-6)
    assert read["top1"] == pytest.approx(top1 / examples, rel=1e-6)
