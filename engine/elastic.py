"""Elastic training on Horovod elastic (Gloo): a run that goes on when workers leave or join, and
computes what it would have computed on its first worker count.

The run's state lives in every worker's memory between commits (`TrainingState`): the variables
of `state_variables` (net, optimizer slots and iterations, weight average, BN statistics, metric
sums) and a few host values that the caller keeps in `values` (the run's seed,
slots and dtype, whether training started, the seconds trained). `run(train, state)` calls the
training function until it returns:

- a collective failed because a worker died: every survivor restores the last commit;
- hosts were added or removed (Horovod's host discovery): the commit that noticed it raises
  HostsUpdatedInterrupt on every worker at the same step, so the state is the committed one;

then Horovod starts again with the workers there now (a rendezvous, which may renumber them),
rank 0 broadcasts the state, and `train` runs again from the committed step. The state is
synchronized on every entry, after a removal too: skipping that, as Horovod's own loop does
after a removal, deadlocks when the survivors wait below --min-np for a worker that joins
(horovod#3494). Any other error ends the run as it would without elastic training: Horovod's
own TensorFlow `run` returns None, silently, from an UnknownError whose message names none of
HorovodAllreduce/Allgather/Broadcast, which the engine's grouped all-reduce is not.

Commits: `CommitHook` commits at the loop's stop checks (about every 0.75 x --stop_within
seconds), after the hooks due there, and `save_point` runs before every checkpoint is written,
so that a checkpoint holds a committed state. Only a commit looks for host changes (a save point
must not be interrupted before its checkpoint). A commit first makes the per-worker parts of the
state one value (`consolidate`: BN statistics averaged, partial metric sums carried on
every worker), so a worker that dies takes no share of the run with it.
"""
from typing import Callable

from horovod.common.elastic import State, notification_manager
from horovod.common.exceptions import HostsUpdatedInterrupt

from engine import distributed
from engine.controller import Hook


class TrainingState(State):
    """The in-memory state of a run: `train_step`'s elastic variables and `values` (a dict of
    picklable host values, rank 0's on every worker after a sync). The train step's optimizer
    slots must exist before (horovod#2652: a worker that joins would broadcast fewer)."""

    def __init__(self, *, train_step, backend, values: dict):
        super().__init__(bcast_object=backend.broadcast_object, get_rank=lambda: backend.rank)
        self.train_step, self.backend = train_step, backend
        self.variables = state_variables(train_step)
        self.values = dict(values)
        self.resets = 0
        self._committed = None
        self.save()

    def save(self):
        """A copy of the state in host memory (Horovod's commit calls it)."""
        self._committed = ([v.numpy() for v in self.variables], dict(self.values))

    def restore(self):
        arrays, values = self._committed
        for variable, array in zip(self.variables, arrays, strict=True):
            variable.assign(array)
        self.values = dict(values)

    def sync(self):
        """Rank 0's state on every worker, then kept as the commit."""
        self.values = self.backend.broadcast_object(self.values)
        self.backend.broadcast_variables(self.variables)
        self.save()

    def save_point(self, **values):
        """The per-worker parts made one, `values` updated, the state kept: a commit without
        the check for host changes (before a checkpoint, which must not be interrupted)."""
        consolidate(self.train_step)
        self.values.update(values)
        self.save()

    def commit(self, **values):
        """save_point, then HostsUpdatedInterrupt on every worker if hosts were added or
        removed (one broadcast: all workers decide alike)."""
        self.save_point(**values)
        self.check_host_updates()


def state_variables(train_step):
    """Every variable of the run's in-memory state: the train step's shared and drifting ones,
    its metric sums and its non-finite record, each once and in the same order on every
    worker."""
    seen, out = set(), []
    for v in (train_step.shared_variables() + train_step.drifting_variables()
              + train_step.metrics.sums + train_step.metrics.carried
              + [train_step.nonfinite_step]):
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def consolidate(train_step):
    """Leaves no worker holding a share of the run that the others lack (before a commit):
    drifting statistics averaged, partial metric sums carried on every worker. A lone worker
    carries its sums too: a worker that joins receives the committed state, and would count
    partial sums it received as its own."""
    train_step.average_drifting_statistics()
    train_step.metrics.carry_partial_sums(train_step.backend)


class CommitHook(Hook):
    """Commits (`commit(step)`) at the loop's stop checks once the step is timed (`stop_checks`:
    engine/hooks/pace.py's StopChecks): about every 0.75 x --stop_within seconds, so that a
    failure loses at most that much, and never while the step is being timed (a commit there
    would count as step time); after the hooks due there (it goes last). Before every
    checkpoint it keeps a save point (`save_point(step)`), so that a checkpoint holds a
    committed state."""

    rides_along = True

    def __init__(self, *, stop_checks, commit: Callable[[int], None],
                 save_point: Callable[[int], None]):
        self.stop_checks, self.commit, self.save_point = stop_checks, commit, save_point

    def at_boundary(self, step):
        if self.stop_checks.is_check(step):
            self.commit(step)

    def before_checkpoint(self, step):
        self.save_point(step)


def run(train, state: TrainingState, *, backend,
        before_rendezvous: Callable[[str], None] = lambda reason: None):
    """`train(state)`'s result, after as many resets as the workers' changes take (Horovod's
    --reset-limit bounds them: past it the launcher ends the job). `before_rendezvous(reason)`
    runs before each reset (disarm what would take a long rendezvous for a stall)."""
    notification_manager.init()
    notification_manager.register_listener(state)
    try:
        while True:
            try:
                state.sync()
                return train(state)
            except HostsUpdatedInterrupt:
                reason = "the hosts changed"
            except Exception as error:  # noqa: BLE001 - re-raised unless a collective failed
                if not distributed.is_collective_failure(error):
                    raise
                state.restore()
                reason = f"a collective failed ({first_line(error)})"
            state.resets += 1
            before_rendezvous(reason)
            backend.reset()
            state.on_reset()
    finally:
        notification_manager.remove_listener(state)


def first_line(error, limit=200):
    """The line of a collective's error that names Horovod (TensorFlow's first line is often
    just "Graph execution error:"), shortened to `limit` characters."""
    lines = [line.strip() for line in str(getattr(error, "message", "") or error).splitlines()]
    named = [line for line in lines if "Horovod" in line] or [line for line in lines if line]
    text = named[0].replace(" defined at (most recent call last):", "") if named else \
        type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
