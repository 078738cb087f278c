"""Distributed backends behind one small interface: Horovod when launched by horovodrun/mpirun
(or asked for), a single process otherwise.

    backend.rank, .size, .local_rank, .is_chief
    backend.average_gradients(grads)   in the train step: grouped all-reduce, op=Average
    backend.sum(tensors)               metric sums across workers
    backend.average(tensors)           e.g. batch-norm moving statistics before evaluation
    backend.broadcast_variables(vars)  rank 0's values everywhere
    backend.any(flag)                  True on every worker if it is True on one (stop requests)
"""
import os

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


class Horovod:
    """Horovod collectives. Gradients stay float32 unless fp16 compression is asked for
    (Horovod has no bfloat16 all-reduce)."""

    def __init__(self, fp16_allreduce=False):
        import horovod.tensorflow as hvd
        hvd.init()
        self._hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.local_rank = hvd.local_rank()
        self.is_chief = self.rank == 0
        self._compression = hvd.Compression.fp16 if fp16_allreduce else hvd.Compression.none
        self.name = f"horovod ({'gloo' if hvd.gloo_enabled() else 'mpi'}, {self.size} workers)"

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
