"""Writes that leave a whole file or none: a full, read-only or vanished disk raises
WriteFailed naming the file, after removing what was half-written."""
import errno
import glob
import os
import shutil

from engine.errors import WriteFailed


def write_whole(path: str, text: str, *, durable: bool = False) -> None:
    """`text` as the file `path`, replaced at once (a temporary file renamed over it);
    `durable`: on the disk before the rename (fsync), not only in the kernel."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        remove_quietly(tmp)
        raise failed(path, e) from None


def append_whole(path: str, text: str) -> None:
    """`text` appended to `path`; a write that fails part-way is cut off again, so that the
    file ends where it ended before."""
    try:
        size = os.path.getsize(path) if os.path.exists(path) else None
        with open(path, "a") as f:
            f.write(text)
    except OSError as e:
        try:
            if size is None:
                remove_quietly(path)
            else:
                os.truncate(path, size)
        except OSError:
            pass
        raise failed(path, e) from None


# The causes a write fails for that are the disk's, as the C library names them (TensorFlow's
# file system errors carry the same text).
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
DISK_CAUSES = tuple(os.strerror(code) for code in DISK_ERRNOS)


def failed(path: str, error: OSError) -> WriteFailed:
    return WriteFailed(f"could not write {path}: {cause(error)}")


# What else a write can meet, named the same way: a directory gone (the file system unmounted
# or model_dir removed under the run), no permission, a failing or stale device.
OTHER_CAUSES = tuple(os.strerror(code) for code in (errno.ENOENT, errno.EACCES, errno.EIO,
                                                    errno.ESTALE, errno.ENOTDIR))


def cause(error: BaseException) -> str:
    """Why a write failed, in a few words: the C library's words where the error holds them (a
    TensorFlow error's message buries them after an op's internals), else its first line."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = getattr(error, "message", None) or str(error)
    named = [words for words in DISK_CAUSES + OTHER_CAUSES if words in text]
    if named:
        return named[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def remove_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except OSError:
        pass


def remove_partial_checkpoint(prefix: str) -> None:
    """What a failed or killed save of the checkpoint `prefix` (e.g. <dir>/ckpt-20) left: its
    temporary directory and any of its files (TensorFlow names the checkpoint in the
    directory's state file last, so these files belong to no checkpoint)."""
    for path in glob.glob(glob.escape(prefix) + "_temp*") + glob.glob(glob.escape(prefix) + ".*"):
        remove_quietly(path)


def remove_stale_temporaries(directory: str) -> list:
    """The temporary directories and state files that a save killed mid-write left in a
    checkpoint directory, removed; their paths."""
    stale = (glob.glob(os.path.join(glob.escape(directory), "*_temp*"))
             + glob.glob(os.path.join(glob.escape(directory), "checkpoint.tmp*")))
    for path in stale:
        remove_quietly(path)
    return stale
