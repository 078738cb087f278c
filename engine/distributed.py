"""Distributed backends behind one small interface: Horovod when launched by horovodrun/mpirun
(or asked for), a single process otherwise.

    backend.rank, .size, .local_rank, .is_chief
    backend.average_gradients(grads)   in the train step: grouped all-reduce, op=Average
    backend.sum(tensors)               metric sums across workers
    backend.average(tensors)           e.g. batch-norm moving statistics before evaluation
    backend.broadcast_variables(vars)  rank 0's values everywhere
    backend.any(flag)                  True on every worker if it is True on one (stop requests)
    backend.broadcast_object(obj)      rank 0's picklable object everywhere
    backend.gather(obj)                every worker's picklable object, in rank order
    backend.peers()                    every worker's Peer (rank, host, process): who a
                                       failed collective lost (lost_peers)
    backend.reset()                    Horovod shut down and started again (an elastic rendezvous):
                                       rank and size read anew
"""
import os
import socket
from typing import NamedTuple

import tensorflow as tf

# Set by horovodrun (Gloo), mpirun (Open MPI, MPICH/Intel MPI) or Slurm's srun.
_LAUNCHER_SIZE_VARIABLES = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
_LAUNCHER_LOCAL_SIZE_VARIABLES = ("HOROVOD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE",
                                  "MPI_LOCALNRANKS")


def _announced(variables):
    for variable in variables:
        if os.environ.get(variable):
            return max(1, int(os.environ[variable]))
    return 1


def launcher_world_size():
    """Workers as the launcher announced them in the environment (1 without a launcher); known
    before Horovod starts, so that flags can be checked against it."""
    return _announced(_LAUNCHER_SIZE_VARIABLES)


def launcher_local_size():
    """Workers the launcher started on this host (1 without a launcher), before Horovod starts
    (thread pools are sized before TensorFlow's first op)."""
    return _announced(_LAUNCHER_LOCAL_SIZE_VARIABLES)


def launched_elastic() -> bool:
    """Whether horovodrun started this worker in elastic mode."""
    return os.environ.get("HOROVOD_ELASTIC") == "1"


class Peer(NamedTuple):
    """A worker's process: its rank, host name, process id, and the kernel and PID namespace
    its process id belongs to (two peers with the same `space` can see each other's)."""
    rank: int
    host: str
    pid: int
    space: str


def this_process(rank: int) -> Peer:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # not Linux: no process of another worker can be checked
        boot, namespace = socket.gethostname(), os.getpid()
    return Peer(rank, socket.gethostname(), os.getpid(), f"{boot}/{namespace}")


def lost_peers(peers, rank: int):
    """After a failed collective, from `peers` (backend.peers() of the start): (gone, elsewhere)
    - the peers whose process is gone, among those this process can see (its own kernel and
    PID namespace), and the ones it cannot check (other hosts)."""
    me = next(p for p in peers if p.rank == rank)
    gone, elsewhere = [], []
    for peer in peers:
        if peer.rank == rank:
            continue
        if peer.space != me.space:
            elsewhere.append(peer)
            continue
        try:
            os.kill(peer.pid, 0)
        except ProcessLookupError:
            gone.append(peer)
        except PermissionError:  # alive, another user's
            pass
    return gone, elsewhere


class SingleProcess:
    rank, size, local_rank, is_chief = 0, 1, 0, True
    name = "single process"

    def average_gradients(self, grads):
        return list(grads)

    def sum(self, tensors):
        return list(tensors)

    def average(self, tensors):
        return list(tensors)

    def broadcast_variables(self, variables):
        del variables

    def any(self, flag):
        return bool(flag)

    def broadcast_object(self, obj):
        return obj

    def gather(self, obj):
        return [obj]

    def peers(self):
        return self.gather(this_process(0))


class Horovod:
    """Horovod collectives. Gradients stay float32 unless fp16 compression is asked for
    (Horovod has no bfloat16 all-reduce)."""

    def __init__(self, fp16_allreduce=False):
        import horovod.tensorflow as hvd
        hvd.init()
        self._hvd = hvd
        self._compression = hvd.Compression.fp16 if fp16_allreduce else hvd.Compression.none
        self._read_membership()

    def _read_membership(self):
        hvd = self._hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank = hvd.local_rank()
        self.is_chief = self.rank == 0
        self.name = f"horovod ({'gloo' if hvd.gloo_enabled() else 'mpi'}, {self.size} workers)"

    def reset(self):
        """Shuts Horovod down and starts it again: under an elastic launcher the start is a new
        rendezvous of the workers there now, which may renumber them."""
        self._hvd.shutdown()
        self._hvd.init()
        self._read_membership()

    def broadcast_object(self, obj):
        from horovod.tensorflow.functions import broadcast_object
        return broadcast_object(obj, root_rank=0)

    def gather(self, obj):
        from horovod.tensorflow.functions import allgather_object
        return list(allgather_object(obj))

    def peers(self):
        return self.gather(this_process(self.rank))

    def average_gradients(self, grads):
        return self._hvd.grouped_allreduce(list(grads), op=self._hvd.Average,
                                           compression=self._compression)

    def sum(self, tensors):
        return self._hvd.grouped_allreduce(list(tensors), op=self._hvd.Sum)

    def average(self, tensors):
        return self._hvd.grouped_allreduce(list(tensors), op=self._hvd.Average)

    def broadcast_variables(self, variables):
        self._hvd.broadcast_variables(list(variables), root_rank=0)

    def any(self, flag):
        total = self._hvd.allreduce(tf.constant(1.0 if flag else 0.0), op=self._hvd.Sum,
                                    name="any_flag")
        return float(total) > 0.0


def create(use_horovod=None, fp16_allreduce=False):
    """Horovod if use_horovod, or (use_horovod=None) if a launcher started several workers."""
    if use_horovod is None:
        use_horovod = launcher_world_size() > 1
    return Horovod(fp16_allreduce) if use_horovod else SingleProcess()


def is_collective_failure(error):
    """Whether `error` is a Horovod collective that failed because the workers changed (a peer
    died or Horovod shut down), as opposed to an error of the run itself: Horovod's own
    HorovodInternalError, or a TensorFlow op error raised by one of Horovod's ops (its message
    names the op, e.g. HorovodGroupedAllreduce, or Horovod's shutdown)."""
    if type(error).__name__ == "HorovodInternalError":
        return True
    return isinstance(error, tf.errors.OpError) and "Horovod" in str(error)
