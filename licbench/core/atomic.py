"""Result files written whole or not at all: a temporary file in the same directory, flushed
to disk, then ``os.replace`` over the target — a killed run leaves the old file or the new
one, never half of one. :func:`lock` keeps a second writer out of a directory."""
from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data.encode() if isinstance(data, str) else data)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes it owner-only)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def lock(path: str | Path) -> IO:
    """``path`` (created if missing) open with an exclusive ``flock`` on it, held until the file is
    closed, or :class:`BlockingIOError` at once when another process holds it (or removed the file
    between this one's opening and locking it). The kernel drops the lock with its process, so a
    killed run leaves no stale lock; the file stays, unlocked."""
    file = open(path, "a")  # the open file is the lock: the caller closes it
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(file.fileno()).st_nlink == 0:  # unlinked by the holder before it let go
            raise BlockingIOError(f"{path} was removed by the process that held it")
    except BaseException:
        file.close()
        raise
    return file
