"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash mid-write leaves the previous file (if any) intact and no half-written file under the
final name. The temporary file is hidden and carries the writer's process id
(``.<name>.<pid>.<random>.tmp<suffix>``), so that :func:`remove_stale_temporaries` can clean
up after writers that were killed without touching the files of a writer still running.

A full disk is one error, whichever writer met it: :func:`atomic_path` (and :func:`naming_full_disk`
for files appended in place) turn it into ``OSError(ENOSPC, "no space left on the device writing
<path>")``. Writers do not all say ENOSPC: ``torch.save`` raises ``RuntimeError("[enforce fail at
inline_container.cc:...] . unexpected pos ...")`` and ``np.save`` ``OSError("129600 requested and
65408 written")``, neither with an errno; :func:`is_disk_full` therefore also takes the file
system's own word (less than :data:`FULL_BELOW` bytes left to this process) for such a failure.
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


FULL_BELOW = 1 << 20
"""Bytes: a write that fails without an errno (``torch.save``, ``np.save``) while the file system
has less than this left for this process failed because the disk is full. A failed write leaves
the disk full to the block (a tiny tmpfs: 0 bytes; ext4 keeps its reserved blocks out of
``f_bavail``), so 1 MiB is a wide margin and still far below any disk that has room."""

_ERRNO_LESS = (RuntimeError,)
"""Exceptions that writers raise for a failed write without an errno (torch's C++ writer)."""


def no_space_error(path: str | os.PathLike) -> OSError:
    """The one error of a full disk: ``OSError(ENOSPC, "no space left on the device writing <path>")``."""
    return OSError(errno.ENOSPC, f"no space left on the device writing {path}")


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """Whether ``exc``, raised while writing into ``folder``, means that the disk is full.

    True for an ``OSError`` with errno ENOSPC; also for an ``OSError`` without errno or a
    ``RuntimeError`` (what ``np.save`` and ``torch.save`` raise for a short write) when ``folder``'s
    file system has less than :data:`FULL_BELOW` bytes left for this process (``os.statvfs``;
    a file system that reports no size, such as an unlimited tmpfs, is never called full).
    """
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    errno_less = (isinstance(exc, OSError) and exc.errno is None) or isinstance(exc, _ERRNO_LESS)
    if not errno_less or folder is None or not hasattr(os, "statvfs"):
        return False
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_blocks > 0 and stats.f_bavail * stats.f_frsize < FULL_BELOW


@contextlib.contextmanager
def naming_full_disk(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk met while writing ``path`` in the ``with`` body into :func:`no_space_error`
    (for files written in place, such as an appended log; :func:`atomic_path` does it itself)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc, Path(path).parent):
            raise no_space_error(path) from None
        raise


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
        OSError: ``"no space left on the device writing <path>"`` (errno ENOSPC) when the disk is
            full, whatever the writer raised (:func:`is_disk_full`); any other OSError as it is.
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
        full = is_disk_full(exc, tmp_path.parent)  # before the temporary's space is freed
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if full:
            raise no_space_error(path) from None
        raise


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` with a message naming ``path`` (one line, for the command line)."""
    if exc.errno == errno.ENOSPC:
        return no_space_error(path)
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
