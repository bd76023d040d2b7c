"""Named weights to a checkpoint file: shipped, cached, or downloaded once (docs/zoo.md).

* A shipped entry is the file beside its registry (``<registry folder>/weights/<file>``).
* A URL entry lives in the cache, ``$TORCHSSC_HOME/weights/<file>`` (default
  ``~/.cache/torchssc``). A file already there, downloaded earlier or put there by hand, is used
  as it is once its size and sha256 are those of the registry; otherwise it is downloaded
  (``urllib``, any scheme it knows, ``file://`` included) with a progress bar, into a temporary
  file in the cache folder that is renamed into place only when its sha256 is right.

Every failure is one line (``OSError`` / ``ValueError``, which ``torchssc`` prints and exits 2
with): offline or unreachable (naming the file and where to put it), a checksum mismatch (the
file is not used; a downloaded one is deleted, one put by hand is left and refused), an unknown
name (the nearest names).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from torchssc.io.atomic import atomic_path
from torchssc.zoo.registry import WeightsEntry, find_entry

HOME_ENV = "TORCHSSC_HOME"
"""Environment variable: torchssc's cache folder (default ``~/.cache/torchssc``)."""
CHUNK = 1 << 20
TIMEOUT_S = 30.0
"""Seconds a download waits for the server before it counts as unreachable."""


def torchssc_home() -> Path:
    """``$TORCHSSC_HOME``, else ``~/.cache/torchssc``."""
    home = os.environ.get(HOME_ENV, "").strip()
    return Path(home).expanduser() if home else Path.home() / ".cache" / "torchssc"


def cache_path(entry: WeightsEntry, home: str | os.PathLike | None = None) -> Path:
    """Where a URL entry's file lives: ``<home>/weights/<file>``."""
    return Path(home if home is not None else torchssc_home()) / "weights" / entry.file


def entry_path(entry: WeightsEntry, home: str | os.PathLike | None = None) -> Path:
    """The file an entry resolves to (shipped file or cache path), whether it exists or not."""
    return entry.shipped_path if entry.shipped else cache_path(entry, home)


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(entry: WeightsEntry, path: Path) -> str | None:
    """Why ``path`` is not the entry's file (size, then sha256), or ``None`` when it is."""
    size = path.stat().st_size
    if size != entry.size:
        return f"{size} bytes, the registry says {entry.size}"
    digest = sha256_of(path)
    if digest != entry.sha256:
        return f"sha256 {digest[:12]}..., the registry says {entry.sha256[:12]}..."
    return None


def _unavailable(entry: WeightsEntry, target: Path, reason: str) -> OSError:
    return OSError(f"weights {entry.name!r}: cannot download {entry.url} ({reason}); offline? put the file "
                   f"{entry.file} ({entry.size:,} bytes, sha256 {entry.sha256}) at {target} by hand and run again")


def _reason(exc: BaseException) -> str:
    """Why a URL could not be read, short: ``No such file or directory``, ``Connection refused``."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason).strip() or type(reason).__name__


def _chunks(response, entry: WeightsEntry, target: Path):
    """The bytes of ``response`` in chunks of :data:`CHUNK`; a connection lost on the way is
    :func:`_unavailable`."""
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:  # a timeout, a reset, a short read
            raise _unavailable(entry, target, f"interrupted: {_reason(exc)}") from None
        if not chunk:
            return
        yield chunk


def download(entry: WeightsEntry, target: Path, *, progress: bool = True) -> Path:
    """Download a URL entry's file to ``target``, checked: written to a temporary file beside
    ``target`` and renamed onto it only when its sha256 is the registry's.

    Raises:
        OSError: the URL cannot be read (one line naming the file and where to put it by hand).
        ValueError: the downloaded file's checksum is wrong (the file is deleted).
    """
    try:
        response = urllib.request.urlopen(entry.url, timeout=TIMEOUT_S)  # noqa: S310 (the registry's URL)
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise _unavailable(entry, target, _reason(exc)) from None
    digest = hashlib.sha256()
    with response, atomic_path(target, durable=True) as tmp, open(tmp, "wb") as out, tqdm(
        total=entry.size, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.file,
        disable=not progress, leave=False,
    ) as bar:
        for chunk in _chunks(response, entry, target):
            out.write(chunk)  # a full disk is atomic_path's one-line OSError, not "cannot download"
            digest.update(chunk)
            bar.update(len(chunk))
        got = digest.hexdigest()
        if got != entry.sha256:  # leaving the block with an error removes the temporary file
            raise ValueError(f"weights {entry.name!r}: the file downloaded from {entry.url} has sha256 "
                             f"{got[:12]}..., the registry says {entry.sha256[:12]}...: deleted, not used")
    return target


def resolve_weights(name: str, registry: Mapping[str, WeightsEntry] | None = None, *,
                    home: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """The checked checkpoint file of the weights called ``name``.

    Args:
        registry: ``{name: entry}`` (:func:`torchssc.zoo.registry.load_registry`); ``None``: the
            package's registry plus ``$TORCHSSC_WEIGHTS_REGISTRY``.
        home: the cache folder; ``None``: :func:`torchssc_home`.
        progress: show a progress bar while downloading.
    Raises:
        ValueError: unknown name (the nearest are named); a file whose size or sha256 is not the
            registry's (not used).
        FileNotFoundError: a shipped file missing from the installation.
        OSError: a URL entry not in the cache that cannot be downloaded.
    """
    entry = find_entry(name, registry)
    if entry.shipped:
        path = entry.shipped_path
        if not path.is_file():
            raise FileNotFoundError(f"weights {name!r}: the shipped file {path} is missing; reinstall torchssc")
        why = _mismatch(entry, path)
        if why:
            raise ValueError(f"weights {name!r}: the shipped file {path} is damaged ({why}); reinstall torchssc")
        return path
    path = cache_path(entry, home)
    if path.is_file():
        why = _mismatch(entry, path)
        if why:
            raise ValueError(f"weights {name!r}: {path} is not the registry's file ({why}): not used; it was put "
                             f"there by hand or changed since, so it is left as it is: delete it to download "
                             f"again, or put the right file there")
        return path
    return download(entry, path, progress=progress)


def weights_state(entry: WeightsEntry, home: str | os.PathLike | None = None) -> str:
    """Where an entry's file is, in words, without reading it: ``shipped``, ``URL, cached`` or
    ``URL, not downloaded``."""
    if entry.shipped:
        return "shipped"
    return "URL, cached" if cache_path(entry, home).is_file() else "URL, not downloaded"

