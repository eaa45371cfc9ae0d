"""List what a tar or zip archive or a folder holds, safely, without writing anything.

A :class:`Listing` names every file and folder in the source's own order (a tar's stream
order, a zip's directory order, a folder's sorted walk), minus hidden names and archive litter,
and says how to read each file: its bytes (a tar, read as it streams past: a compressed tar has
no random access), a zip member, or a path. Names are checked before anything is read.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from job.data.images import IMAGE_SUFFIXES
from job.errors import DataError

Ref = Path | bytes | tuple[str, str]
"""How a worker reads a file: a path, the bytes themselves, or (zip archive, member name)."""

LITTER = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
"""Names (beside any starting with a dot) that archivers and file browsers leave behind."""

_KEPT = IMAGE_SUFFIXES | {""}  # a tar member with no suffix may be one of CIFAR's batches


@dataclass
class Listing:
    """The source's folders and files by normalised relative name, in the source's order."""

    folders: list[str] = field(default_factory=list)
    files: dict[str, Ref] = field(default_factory=dict)
    other_files: int = 0
    """Files that are neither images nor hidden (a README, labels.txt): ignored, counted."""


def is_ignored(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints/``) and archive litter."""
    return any(part.startswith(".") or part in LITTER for part in name.split("/"))


def unsafe(name: str) -> str | None:
    """Why a member name would leave the archive's folder, or None when it stays inside."""
    if posixpath.isabs(name) or "\\" in name or name[1:3] == ":/":
        return f"refusing absolute member {name!r}"
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        return f"refusing unsafe member {name!r} (outside the archive's folder)"
    return None


def list_source(source: Path, url: str) -> Listing:
    """The listing of a folder, a zip archive or a tar archive (any compression)."""
    if source.is_dir():
        return _list_folder(source)
    if zipfile.is_zipfile(source):
        return _list_zip(source, url)
    return _list_tar(source, url)


def _add(listing: Listing, name: str, ref: Ref | None, *, read: bool = True) -> None:
    """Record one member under its normalised name, unless hidden or litter; ``read=False``:
    a tar member left unread, another file whatever its name."""
    name = _normal(name)
    if name in (".", "") or is_ignored(name):
        return
    if ref is None:
        listing.folders.append(name)
    elif read and posixpath.splitext(name)[1].lower() in _KEPT:
        listing.files[name] = ref
    else:  # its folder still counts: a class folder holding no pictures is reported
        listing.other_files += 1
        if "/" in name:
            listing.folders.append(posixpath.dirname(name))


def _normal(name: str) -> str:
    return posixpath.normpath(name).removeprefix("./")


def _list_folder(root: Path) -> Listing:
    listing = Listing()
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not is_ignored(d))
        rel = Path(here).relative_to(root).as_posix()
        prefix = "" if rel == "." else f"{rel}/"
        if prefix:
            _add(listing, prefix, None)
        for name in sorted(files):
            _add(listing, prefix + name, Path(here, name))
    return listing


def _list_zip(archive: Path, url: str) -> Listing:
    listing = Listing()
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if reason := unsafe(info.filename):
                    raise DataError(f"The archive from {url} is unsafe: {reason}.")
                ref = None if info.is_dir() else (str(archive), info.filename)
                _add(listing, info.filename, ref)
    except (zipfile.BadZipFile, zlib.error, OSError) as exc:
        raise DataError(
            f"The archive from {url} cannot be read ({type(exc).__name__}: {exc}); "
            "it is corrupt, truncated or not a zip archive."
        ) from None
    return listing


def check_member(member: tarfile.TarInfo) -> None:
    """Refuse anything that is not a plain file or folder with a name inside the archive.

    Members are only ever read from the stream, never written, so the check is on names
    alone: tarfile's "data" filter would resolve each name against the real disk (four lstat
    calls a member, for 60,000 members; docs/benchmarks.md measures it) to protect an
    extraction that never happens. With links refused, a name that stays inside after
    lexical normalisation stays inside, so the refusals match the filter's.
    """
    if member.issym() or member.islnk():
        raise DataError(f"refusing link member {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"refusing special member {member.name!r}")
    if reason := unsafe(member.name):
        raise DataError(reason)


def _list_tar(archive: Path, url: str) -> Listing:
    """Stream the tar once, keeping the bytes of the files that may be images or batches."""
    listing = Listing()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                try:
                    check_member(member)
                except DataError as exc:
                    raise DataError(f"The archive from {url} is unsafe: {exc.message}.") from None
                if member.isdir():
                    _add(listing, member.name, None)
                elif not _wanted(member.name):
                    _add(listing, member.name, b"", read=False)
                else:
                    f = tar.extractfile(member)
                    assert f is not None  # a regular file always has a stream
                    _add(listing, member.name, f.read())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"The archive from {url} cannot be read ({type(exc).__name__}: {exc}); "
            "it is corrupt, truncated or not a tar or zip archive."
        ) from None
    return listing


def _wanted(name: str) -> bool:
    """Whether a tar member's bytes are kept: an image, or a batch, not hidden."""
    name = _normal(name)
    return posixpath.splitext(name)[1].lower() in _KEPT and not is_ignored(name)


def read(ref: Ref) -> bytes:
    """A listed file's bytes."""
    if isinstance(ref, bytes):
        return ref
    if isinstance(ref, tuple):
        with zipfile.ZipFile(ref[0]) as zf:
            return zf.read(ref[1])
    return ref.read_bytes()
