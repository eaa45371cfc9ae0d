"""Fetch what DATA_URL names: a local file or folder as it is, a download under DATA_DIR.

Downloads retry with backoff on 5xx, timeouts and truncated bodies, write under a temporary
name renamed when complete, and fail at once, naming the sizes, when DATA_DIR has no room.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from job import parsers
from job.errors import DataError
from job.events import log
from job.resources import free_bytes, is_no_space, size

_ATTEMPTS = 4  # download tries; waits between them grow 1 s, 2 s, 4 s
_TIMEOUT_S = 30.0  # per socket operation, so a stalled server cannot hang a job
_CHUNK = 1 << 20  # bytes per read while downloading


def fetch(url: str, data_dir: Path) -> tuple[Path, bool]:
    """Return the archive's or folder's local path and whether it was downloaded (and may be
    removed); a folder is file:// only."""
    path = parsers.file_path(url)
    if path is not None:
        if not (path.is_file() or path.is_dir()):
            raise DataError(f"DATA_URL={url} names no readable file or folder; check the path.")
        return path, False
    name = PurePosixPath(urlparse(url).path).name or "cifar10.tgz"
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = data_dir / "downloads" / f"{tag}-{name}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(url, target)
    return target, True


class _Transient(Exception):
    """A download failure that may pass if tried again."""


def _download(url: str, target: Path) -> None:
    last = ""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _download_once(url, target)
            return
        except _Transient as exc:
            last = str(exc)
            if attempt < _ATTEMPTS:
                wait = 2 ** (attempt - 1)
                log(f"download of {url} failed ({last}); retrying in {wait} s")
                time.sleep(wait)
    raise DataError(f"Could not download {url} after {_ATTEMPTS} attempts: {last}.")


def _download_once(url: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    received, expected = 0, -1
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp, tmp.open("wb") as out:
            expected = int(resp.headers.get("Content-Length") or -1)
            check_room(target.parent, expected, f"the archive from {url}")
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
            if expected >= 0 and received != expected:
                raise _Transient(f"the body was truncated at {received} of {expected} bytes")
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(f"Could not download {url}: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if is_no_space(exc):  # never transient: every retry would fill the volume again
            tmp.unlink(missing_ok=True)
            total = f" of {size(expected)}" if expected >= 0 else ""
            raise DataError(
                f"DATA_DIR={str(target.parent.parent)!r} ran out of space while downloading "
                f"the archive from {url} ({size(received)}{total} received, "
                f"{size(free_bytes(target.parent))} free with the partial download removed); "
                "free space there or point DATA_DIR at a larger volume."
            ) from None
        reason = getattr(exc, "reason", None) or exc
        raise _Transient(f"{type(exc).__name__}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def check_room(folder: Path, needed: int, what: str) -> None:
    """Fail at once, before writing, when ``folder`` (under DATA_DIR) has less than ``needed``
    bytes free; a negative ``needed`` (unknown) passes."""
    free = free_bytes(folder)
    if needed > free:
        data_dir = folder.parent if folder.name == "downloads" else folder
        raise DataError(
            f"DATA_DIR={str(data_dir)!r} has {size(free)} free, but {what} needs "
            f"{size(needed)}; free space there or point DATA_DIR at a larger volume."
        )
