"""Elastic training: `horovodrun -np N --min-np A --max-np B --host-discovery-script SCRIPT
python -m launch.train ...` (Gloo). launch.train detects it from Horovod's environment
(horovodrun sets HOROVOD_ELASTIC=1 in elastic mode): nothing to add to the training flags.

The run keeps its micro-batch slots (S) whatever the workers: on W workers each runs S / W of
them per step, so after a worker leaves the survivors run more micro-batches and the run goes on
as it would have (engine/elastic.py). Every worker count the job may reach must divide S;
one that does not ends the run in one line, with its last checkpoint.
"""
import faulthandler
import os
import signal
import threading
import time

import engine
from engine import distributed
from launch import build_run, hardware, plan
from launch.errors import CommandError

# The lock on model_dir moves with the chief: a new chief waits this long for the old one,
# which is on its way out (it died, or its host was removed), to let go of it.
LOCK_WAIT_SECONDS = 60


def wanted(planned) -> bool:
    """Whether this run trains elastically: launched so, and --elastic not off."""
    return distributed.launched_elastic() and planned.elastic_allowed


class ElasticTraining:
    """Builds what outlives a change of workers before Horovod's elastic loop (no collective
    there: horovod#2189), then `run()` trains under it and returns the Trainer's summary."""

    def __init__(self, planned, *, backend, cleanup, log):
        from engine import elastic
        self.backend, self.log = backend, log
        build_run.check_layout(planned)
        self.bf16 = hardware.bf16_support(hpu=planned.machine.run_on_hpu)
        self.data = build_run.open_input(planned, log=log)
        self.settlement = plan.local_settlement(planned, bf16=self.bf16,
                                                is_chief=backend.is_chief, log=log)
        # Refused before anything is written (the lock creates model_dir).
        self.plan = planned.settle(self.settlement, workers=backend.size, data=self.data)
        self._lock = None
        cleanup.callback(self._release_lock)
        self._hold_lock_if_chief()
        self.parts = build_run.build_parts(self.plan, data=self.data, backend=backend,
                                       cleanup=cleanup)
        self.parts.step.build()  # the optimizer's slots exist before the state (horovod#2652)
        # Built once: each entry after a change of workers resizes it (Trainer.resize).
        self.trainer = build_run.build_trainer(self.plan, self.parts, backend=backend, log=log)
        self.state = elastic.TrainingState(
            train_step=self.parts.step, backend=backend,
            values={"seed": self.plan.seed, "dtype": self.plan.dtype,
                    "slots": self.plan.slots, "started": False, "elapsed": 0.0})
        self._entries = 0
        self._sigterm_line = None
        self._reason = None
        self._fault_handler = False

    def run(self):
        from engine import elastic
        return elastic.run(self._train, self.state, backend=self.backend,
                           before_rendezvous=self._before_rendezvous)

    def _before_rendezvous(self, reason):
        if self.parts.watchdog:
            self.parts.watchdog.pause()  # Horovod's elastic timeout bounds the rendezvous
        self._reason = reason  # said after the rendezvous, by the chief there is then
        line = (f"train: elastic: the launcher ended the job while the workers met again after "
                f"{self.state.resets} reset{'s' * (self.state.resets > 1)} (Horovod's "
                f"--reset-limit reached, or too few workers for --min-np until "
                f"--elastic-timeout); the last checkpoint in {self.plan.model_dir}/checkpoints "
                f"resumes the run: run the command again")
        if self._sigterm_line is not None:  # the synchronization after the last one failed
            self._sigterm_line.line = line
            return
        # A worker whose host was removed ends in the rendezvous: Horovod's C++ start throws
        # "<host> has been removed from elastic job" and aborts. That line says it all; absl's
        # fault handler would add every thread's stack to it.
        self._fault_handler = faulthandler.is_enabled()
        faulthandler.disable()
        self._sigterm_line = _SigtermLine(line, say=self.backend.is_chief)

    def _train(self, state):
        from engine import elastic
        if self._sigterm_line is not None:  # met again: SIGTERM stops the run again
            self._sigterm_line.disarm()
            self._sigterm_line = None
            if self._fault_handler:
                faulthandler.enable()
        backend, parts, values = self.backend, self.parts, state.values
        if values["dtype"] != self.settlement.dtype:
            raise CommandError(f"--dtype={self.plan.dtype_asked} is {self.settlement.dtype} on "
                               f"this worker and {values['dtype']} on rank 0: give --dtype=fp32 "
                               f"or bf16")
        # Rank 0's values, and what this worker count makes of the run's slots.
        self.plan = self.plan.settle(
            plan.Settlement(seed=values["seed"], dtype=values["dtype"],
                            recorded_slots=values["slots"]), workers=backend.size)
        self.trainer.resize(micro_batches=self.plan.micro_batches, seed=self.plan.seed,
                            tensor_dumps=build_run.tensor_dumps(self.plan, backend.rank))
        if parts.watchdog:
            parts.watchdog.rank = backend.rank
        self._hold_lock_if_chief()
        if backend.is_chief:
            build_run.write_run_files(self.plan, bf16=self.bf16)
        self._entries += 1
        if self._entries == 1:
            self.log(build_run.describe(self.plan, parts, backend=backend)
                     + "; elastic (Horovod elastic: commits at every stop check and checkpoint)")
        if self._entries > 1 or values["started"]:  # after a change of workers
            where = (f"going on from step {int(parts.step.optimizer.iterations.numpy())}, the "
                     f"last commit" if values["started"] else
                     "no commit yet: starting again from the last checkpoint, if any")
            self.log(f"elastic: {self._reason or 'the workers changed'}; {backend.size} "
                     f"worker{'s' * (backend.size > 1)} now: the run's {self.plan.slots} "
                     f"micro-batch slots run {self.plan.micro_batches} per worker; {where}")
        commits = elastic.CommitHook(
            stop_checks=self.trainer.stop_checks,
            commit=lambda step: state.commit(**self._progress()),
            save_point=lambda step: state.save_point(**self._progress()))
        if not values["started"]:
            return self.trainer.train(hooks=[commits])
        return self.trainer.train(in_memory_elapsed=values["elapsed"], hooks=[commits])

    def _progress(self):
        """The host values of a commit: training started, and the seconds trained so far."""
        return dict(started=True, elapsed=self.trainer.state.elapsed_seconds())

    def _hold_lock_if_chief(self):
        """The chief holds model_dir's lock; a worker that no longer is lets go of it."""
        if not self.backend.is_chief:
            self._release_lock()
            return
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while self._lock is None:
            try:
                self._lock = engine.ModelDirLock(self.plan.model_dir)
            except engine.ModelDirLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _release_lock(self):
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class _SigtermLine:
    """While the workers meet again, the launcher ends the job with SIGTERM (--reset-limit
    reached, or fewer than --min-np workers until --elastic-timeout): write one line (`say`:
    this worker was the chief) and exit 1; the checkpoints on disk are whole. The main thread
    is blocked in Horovod's C++ start meanwhile, where a Python handler would not run before
    the launcher's SIGKILL, so a thread waits on the signal's wakeup fd instead."""

    def __init__(self, line, *, say):
        self.line, self.say = line, say
        self._read, write = os.pipe()
        os.set_blocking(write, False)
        self._write = write
        self._previous_handler = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        self._previous_fd = signal.set_wakeup_fd(write)
        threading.Thread(target=self._wait, name="sigterm-line", daemon=True).start()

    def _wait(self):
        while True:
            data = os.read(self._read, 64)
            if not data:  # disarmed
                os.close(self._read)
                return
            if signal.SIGTERM in data:
                if self.say:
                    os.write(2, (self.line + "\n").encode())
                os._exit(1)

    def disarm(self):
        signal.set_wakeup_fd(self._previous_fd)
        signal.signal(signal.SIGTERM, self._previous_handler)
        os.close(self._write)
