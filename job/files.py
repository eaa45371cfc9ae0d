"""Writing the job's files: whole or not at all, readable by other users, a full volume named.

Standard library only, like :mod:`job.contract`, so the search may write its own results with
the same guarantees without loading torch.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, cast

FILE_MODE = 0o666
"""Output files are created with this mode minus the umask, so a host user can read what a
container under another uid wrote."""


NO_SPACE_ERRNOS: frozenset[int] = frozenset({errno.ENOSPC, errno.EDQUOT})
"""The errors a write gets when its volume, or the user's quota there, is full."""


class _WriteErrors:
    """A file that remembers the OSError of its last failed write or flush.

    ``torch.save`` turns a failed write into a RuntimeError ("unexpected pos …") that has lost
    the errno; the remembered error lets :func:`atomic_write` still say the volume is full.
    """

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` whole or not at all: ``write(f)`` into a temporary file beside it, fsync,
    then rename it into place.

    On any error, including KeyboardInterrupt, the temporary file is removed and ``path`` keeps
    its previous content. The file gets :func:`default_file_mode`. When the volume or a quota
    is full — however the writer reported it — the error raised is an ``OSError`` with that
    errno (:data:`NO_SPACE_ERRNOS`) whose ``filename`` is ``path``, so the caller can name the
    file and its folder.
    """
    path = Path(path)
    tmp: str | None = None
    recorder: _WriteErrors | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        # mkstemp creates 0600; give the file the mode open() would, so a host user can read
        # what a container wrote to a mounted volume.
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            recorder = _WriteErrors(f)
            write(cast(IO[bytes], recorder))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = exc if isinstance(exc, OSError) else recorder.error if recorder else None
        if isinstance(exc, Exception) and cause is not None and cause.errno in NO_SPACE_ERRNOS:
            raise OSError(cause.errno, os.strerror(cause.errno), str(path)) from exc
        raise


def default_file_mode() -> int:
    """:data:`FILE_MODE` less the process umask: the mode a plainly created file gets."""
    mask = os.umask(0)
    os.umask(mask)
    return FILE_MODE & ~mask


def write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
