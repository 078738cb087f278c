"""Checkpoints (tf.train.Checkpoint + CheckpointManager, rank 0 writes) and the model_dir lock.

A checkpoint holds the net (weights, BN statistics, dropout generator), the optimizer (slots,
iterations), the global step and the epoch, so that a resumed run continues exactly. Restoring
falls back from a corrupt newest checkpoint to the previous one, saying so.
"""
import fcntl
import os

import tensorflow as tf

from engine import files
from engine.ema import WeightEma
from engine.errors import CheckpointError, HeadMismatch, ModelDirLocked, WriteFailed


class ModelDirLock:
    """An exclusive lock on <model_dir>/.lock for the life of a run (released by the kernel if
    the process dies), so that two runs never write the same checkpoints."""

    def __init__(self, model_dir):
        self.path = os.path.join(model_dir, ".lock")
        try:
            os.makedirs(model_dir, exist_ok=True)
            self._file = open(self.path, "a+")
        except OSError as e:  # read-only, full, or not a directory: refused before training
            raise WriteFailed(f"cannot write in model_dir {model_dir}: "
                              f"{files.cause(e)}") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise ModelDirLocked(f"model_dir {model_dir} is in use by {holder}; "
                                 f"wait for it or choose another --model_dir") from None
        try:
            self._file.seek(0)
            self._file.truncate()
            self._file.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
            self._file.flush()
        except OSError as e:
            self.release()
            raise WriteFailed(f"cannot write in model_dir {model_dir}: {files.cause(e)}") from None

    def release(self):
        if not self._file.closed:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


class Checkpoints:
    """The run's checkpoints in `directory`, each holding `objects` (name: trackable): the
    net, the optimizer, counters, the weight average. The `optional` ones may be missing from a
    checkpoint (one written before they existed, or without them): `restore` then leaves them
    as they are and lists them in `missing`."""

    def __init__(self, directory: str, *, keep: int, is_chief: bool, log=print, optional=(),
                 **objects):
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.required = tf.train.Checkpoint(**{k: v for k, v in objects.items()
                                               if k not in optional})
        self.optional = {k: v for k, v in objects.items() if k in optional}
        self.missing = []
        self.directory, self.is_chief, self.log = directory, is_chief, log
        # Every rank builds a manager (to find checkpoints); only rank 0 ever saves.
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    def save(self, step):
        """Writes a checkpoint (rank 0). A failed write (disk full, read-only) removes what it
        left of this checkpoint and raises WriteFailed; the previous checkpoints stay valid
        because TensorFlow names a checkpoint in the directory's state file only once it is
        whole."""
        if not self.is_chief:
            return None
        try:
            return self.manager.save(checkpoint_number=step)
        except (tf.errors.OpError, OSError) as e:
            prefix = os.path.join(self.directory, f"ckpt-{step}")
            if prefix not in self._named():
                files.remove_partial_checkpoint(prefix)
            files.remove_stale_temporaries(self.directory)
            raise WriteFailed(f"could not write a checkpoint to {self.directory}: "
                              f"{files.cause(e)}") from None

    def _named(self):
        """The checkpoints the directory's state file names."""
        try:
            state = tf.train.get_checkpoint_state(self.directory)
        except (tf.errors.OpError, OSError):
            return []
        return list(state.all_model_checkpoint_paths) if state else []

    def remove_leftovers(self):
        """What a save killed mid-write left (the chief, before it resumes); their paths."""
        return files.remove_stale_temporaries(self.directory) if self.is_chief else []

    def restore(self, path, expect_partial=False):
        """Restores `path`; CheckpointError naming it if it is unreadable or of another model."""
        status = None
        try:
            # read(), not restore(): restore() creates the save counter and then requires it in
            # the file, which a checkpoint written by write() (a best one) may not hold; the
            # counter numbers nothing here (the manager names checkpoints by step).
            status = self.required.read(path)
            if expect_partial:
                status.expect_partial()
            else:
                status.assert_existing_objects_matched()
            names = tf.train.load_checkpoint(path).get_variable_to_shape_map()
            self.missing = []
            for name, part in self.optional.items():
                if not any(key.startswith(f"{name}/") for key in names):
                    self.missing.append(name)
                    continue
                status = tf.train.Checkpoint(**{name: part}).read(path)
                status.expect_partial()  # the required parts were restored above
                status.assert_existing_objects_matched()
        except Exception as e:  # noqa: BLE001 - a truncated file raises IndexError, others OpError
            if status is not None:
                status.expect_partial()  # no "unresolved object" warnings after our message
            message = getattr(e, "message", None) or str(e)
            raise CheckpointError(f"checkpoint {path} cannot be restored: "
                                  f"{_first_line(message)}") from None
        return path

    def restore_latest(self, allow_fresh_start=False):
        """Restores the newest usable checkpoint, newest first; None when there is none.

        A checkpoint that fails to load is reported and skipped. If checkpoints exist but none
        loads, raises CheckpointError unless allow_fresh_start (then starts from scratch)."""
        candidates = list(reversed(self.manager.checkpoints))
        failures = []
        for path in candidates:
            try:
                self.restore(path)
                if failures:
                    self.log(f"checkpoint: fell back to {path}")
                return path
            except CheckpointError as e:
                failures.append(str(e))
                self.log(f"checkpoint: {e}; trying the previous one")
        if failures and not allow_fresh_start:
            raise CheckpointError(f"no usable checkpoint in {self.directory} "
                                  f"({len(failures)} found, none loads); refusing to start over "
                                  f"(pass --allow_fresh_start to do so)")
        return None


def recorded_slots(model_dir: str, resume_from: str = None):
    """The micro-batch slot count that the run in model_dir (else the `resume_from`
    checkpoint) recorded in its newest checkpoint; None without one, or one that predates slots
    or does not read (restoring then says what is wrong)."""
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")) or resume_from
    if not path:
        return None
    try:
        reader = tf.train.load_checkpoint(path)
        key = "slots/.ATTRIBUTES/VARIABLE_VALUE"
        return int(reader.get_tensor(key)) if reader.has_tensor(key) else None
    except Exception:  # noqa: BLE001 - any unreadable checkpoint: the restore reports it
        return None


def restore_averaged_net(net, path: str):
    """Restores into the net the weight average (engine.ema) that a checkpoint of ours holds:
    its weights become the averaged weights and BN statistics. CheckpointError if the file has
    no average of this net."""
    average = WeightEma(net, decay=0.5)  # the decay is not used: the values come from the file
    try:
        _restore_objects(path, ema=average)
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {path} holds no weight average of {net.name} (was "
                              f"the run trained with one?): {e}") from None
    average.copy_to_net()
    return path


def restore_net(net, path: str, *, skip_head: bool = False):
    """Restores only the net's weights and BN statistics from a checkpoint of ours: no optimizer
    state, step, epoch or dropout generator; with skip_head, not the classifier either (the net
    keeps its own, e.g. for another number of classes). Every restored part must be in the file.

    Raises CheckpointError naming the path and the misfit, or HeadMismatch when everything but
    the classifier fits (a file trained for another number of classes). After an error the net
    may be partly restored."""
    try:
        _restore_parts(net.checkpoint_parts(head=not skip_head), path)
    except CheckpointError as e:
        if not skip_head:
            try:
                _restore_parts(net.checkpoint_parts(head=False), path)
            except CheckpointError:
                pass
            else:
                raise HeadMismatch(f"checkpoint {path} fits {net.name} except its classifier: "
                                   f"it was trained for another number of classes than "
                                   f"{net.num_classes}") from None
        raise CheckpointError(f"checkpoint {path} does not fit {net.name}: {e}") from None
    return path


def _restore_parts(parts, path):
    _restore_objects(path, net=_View(parts))


def _restore_objects(path, **objects):
    """Restores `objects` from `path`, every one of them required, the rest of the file (the
    optimizer, counters, maybe the head) left alone. CheckpointError with the first line.
    read(), not restore(), which would also require the save counter (see Checkpoints.restore):
    a net's parts are what must fit."""
    try:
        status = tf.train.Checkpoint(**objects).read(path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except Exception as e:  # noqa: BLE001 - a truncated file raises IndexError, others OpError
        raise CheckpointError(_first_line(getattr(e, "message", None) or e)[:300]) from None


class _View(tf.Module):
    """A stand-in holding some of a net's parts under their own attribute names."""

    def __init__(self, parts):
        super().__init__(name="net_parts")
        for attribute, part in parts.items():
            setattr(self, attribute, part)


def _first_line(text):
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:400]
    return "unknown error"
