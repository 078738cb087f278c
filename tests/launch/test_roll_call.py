"""The preflight's roll call (launch/preflight/roll_call.py) against Horovod's own rendezvous
server (the store horovodrun serves its workers): who is named when a worker's beat stops, when
its stage does not move, when it never answers, and when everyone waits at one collective; no
one while the others move. The clock is the test's; the store is real. A worker frozen on a
real host: tests/launch/test_multihost.py."""
import os

import pytest
from horovod.runner.http.http_server import RendezvousServer

from launch.preflight import roll_call

LIMIT = 10
GRACE = LIMIT + roll_call.SILENT_SECONDS


@pytest.fixture(scope="module")
def store():
    server = RendezvousServer()
    port = server.start()
    yield roll_call.Store("127.0.0.1", port)
    server.stop()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def worker(rank, store, clock, *, size=3):
    return roll_call.RollCall(rank=rank, size=size, host=f"host-{rank}", limit=LIMIT,
                              overall=8 * LIMIT + 60, store=store, on_silence=None,
                              clock=clock, watch=False)


def three_at(store, collective, *, rank_1_at):
    """Ranks 0 and 2 waiting at `collective`, rank 1 at the probe `rank_1_at`."""
    clock = Clock()
    zero, one, two = (worker(r, store, clock) for r in range(3))
    one.stage(rank_1_at)
    two.waiting(collective)
    zero.waiting(collective)
    return clock, zero, one, two


def beat(*workers):
    for w in workers:
        w.heartbeat()


@pytest.fixture
def fresh(store):
    """A store with no entries left by another test (its scope emptied)."""
    for rank in range(3):
        store.put(rank, None)
    return store


def test_entries_round_trip_through_horovods_store(fresh):
    fresh.put(2, {"stage": "step", "beat": 3})
    assert fresh.get(2) == {"stage": "step", "beat": 3}
    assert fresh.get(1) is None


def test_a_worker_whose_beat_stopped_is_named_with_its_host_process_and_stage(fresh):
    clock, zero, one, two = three_at(fresh, "the shared model_dir check", rank_1_at="step")
    assert zero.check() is None
    while clock.now - 1000 <= roll_call.SILENT_SECONDS:  # one beats no more; two does
        assert zero.check() is None
        clock.now += 2
        beat(two)
    line = zero.check()
    assert line.startswith("rank 0 (host-0) waited 22 s at the shared model_dir check: "
                           "rank 1 (host-1, process "), line
    assert line.endswith(" has not answered for at least 22 s, last at step"), line
    assert "rank 2" not in line


def test_a_worker_that_beats_but_does_not_move_is_stuck_past_a_probes_limit(fresh):
    clock, zero, one, two = three_at(fresh, "the first gather (every worker started)",
                                     rank_1_at="data_listing")
    while clock.now - 1000 <= GRACE:
        assert zero.check() is None
        clock.now += 2
        beat(one, two)
    line = zero.check()
    # The test's "workers" are all this process.
    assert line.endswith(f"rank 1 (host-1, process {os.getpid()}) has been at data_listing for "
                         f"at least 32 s (a probe's limit is 10 s)"), line


def test_workers_that_move_or_are_slow_within_the_limit_are_not_named(fresh):
    clock, zero, one, two = three_at(fresh, "gathering every worker's findings",
                                     rank_1_at="software")
    stages = ["software", "device", "data_listing", "step", "model_dir", "input"]
    for i in range(60):  # two minutes: each stage takes just under a probe's limit
        clock.now += 2
        if i % 4 == 0:
            one.stage(stages[(i // 4) % len(stages)])
        beat(one, two)
        assert zero.check() is None, (i, zero.check())
    one.stage("all_reduce")
    assert one.check() is None  # not waiting: a worker at a probe judges no one


def test_a_worker_that_never_answers_and_a_collective_that_never_completes(fresh):
    clock = Clock()
    zero, one = (worker(r, fresh, clock) for r in range(2))  # rank 2 never posts
    one.waiting("the all_reduce probe")
    zero.waiting("the all_reduce probe")
    clock.now += GRACE + 1
    beat(one)
    assert zero.check() == ("rank 0 (host-0) waited 31 s at the all_reduce probe: rank 2 never "
                            "answered the roll call")

    del zero.seen[2]  # now only ranks 0 and 1, both beating at the same collective
    clock.now += 2
    beat(one)
    assert zero.check().startswith("every worker reached the all_reduce probe, and it has not "
                                   "completed in 33 s: the workers cannot reach each other")


def test_the_overall_deadline_holds_without_a_store():
    clock = Clock()
    alone = worker(0, None, clock, size=2)
    alone.waiting("the first gather (every worker started)")
    clock.now += 8 * LIMIT + 59
    assert alone.check() is None
    clock.now += 2
    assert alone.check() == ("rank 0 waited 140 s (at the first gather (every worker "
                             "started)) for workers that did not answer")
