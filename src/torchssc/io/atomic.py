"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash mid-write leaves the previous file (if any) intact and no half-written file under the
final name. The temporary file is hidden and carries the writer's process id
(``.<name>.<pid>.<random>.tmp<suffix>``), so that :func:`remove_stale_temporaries` can clean
up after writers that were killed without touching the files of a writer still running.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp(\.[^.]*)?$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    The temporary name keeps ``path``'s suffix so that writers which choose a format by
    suffix (PIL, ``np.save``) behave. On an exception the temporary file is removed and the
    exception propagates; ``path`` is untouched.

    Args:
        durable: ``fsync`` the file before the rename and its folder after it, so that the new
            file survives a power cut as well as a crash (checkpoints).
    Raises:
        OSError: ``"no space left writing <path>"`` when the disk is full (errno ENOSPC); any
            other OSError as it is.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix, dir=path.parent
        )
    except OSError as exc:
        raise _named(exc, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        if durable:
            _fsync(tmp_path)
        os.replace(tmp_path, path)
        if durable:
            _fsync(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise _named(exc, path) from None
        raise


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` with a message naming ``path`` (one line, for the command line)."""
    if exc.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"no space left writing {path}")
    return OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}")


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_path` in ``folder`` (not recursive) whose
    writer process no longer exists (killed mid-write). Returns the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and entry.is_file() and not _writer_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed


def save_npy_atomic(path: str | os.PathLike, array) -> None:
    """``np.save`` ``array`` to ``path`` atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
