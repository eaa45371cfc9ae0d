"""sha256 digests of large files, computed once per version of a file.

Hashing the archive (134 MB) and the decoded cache (185 MB) in full would read both on every
run (what that costs is measured in docs/benchmarks.md). A digest is recomputed only when the
file's *stamp* — device, inode, size, mtime and ctime, in ns — differs from the one recorded
beside it (``DATA_DIR/.verified.json``) when it was last computed.

Why an unchanged stamp means unchanged bytes: every write to a file through the filesystem
updates its mtime and ctime, and the kernel sets ctime itself — no system call lets a program
set it back — while a file replaced by another (rename, copy, re-download) has another inode.
Two writes within one timestamp tick could share a stamp, so, as git does for its index
("racy clean"), a stamp is recorded only when the file last changed more than ``RACY_NS`` ago
and did not change while it was hashed. What this cannot see is corruption beneath the
filesystem (a disk returning wrong bytes without an error); that would equally go unnoticed
in a model or checkpoint file, and the archive's gzip CRC still catches it on decoding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from job.files import write_json

MEMO = ".verified.json"
"""The file in DATA_DIR recording ``{path: {"stamp": [...], "sha256": hex}}``."""
RACY_NS = 2_000_000_000  # a change this recent may share its timestamp tick with another
_CHUNK = 1 << 20  # bytes per read while hashing


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (always the full computation)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def stamp(path: Path) -> list[int]:
    """What changes whenever ``path``'s content can have: device, inode, size, mtime, ctime."""
    st = os.stat(path)
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def sha256(path: Path, memo_dir: Path) -> str:
    """``path``'s sha256: the one recorded in ``memo_dir`` if its stamp is unchanged, else
    computed in full and recorded.

    The caller holds ``memo_dir``'s lock, so no other run rewrites the memo meanwhile. A memo
    that cannot be read or written only costs the full computation.
    """
    memo = _read(memo_dir)
    digest, recorded = _memoised(path, memo)
    if recorded:
        _write(memo_dir, memo)
    return digest


def folder_sha256(folder: Path, memo_dir: Path, ignored: Callable[[str], bool]) -> str:
    """A folder's sha256: that of its manifest, the lines ``<sha256>  <relative path>\n`` of
    every file but those ``ignored`` by relative path (hidden ones and archive litter,
    job/data/sources.py), sorted by path — what
    ``sha256sum`` prints, so a user computes it with the command docs/images.md gives. Each
    file's digest is memoised by its stamp as :func:`sha256`'s, the memo written once."""
    memo = _read(memo_dir)
    lines, changed = [], False
    for path in sorted(_files(folder), key=lambda p: p.relative_to(folder).as_posix().encode()):
        rel = path.relative_to(folder).as_posix()
        if ignored(rel):
            continue
        digest, recorded = _memoised(path, memo)
        changed |= recorded
        lines.append(f"{digest}  {rel}\n")
    if changed:
        _write(memo_dir, memo)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _files(folder: Path) -> list[Path]:
    return [Path(here, name) for here, _, names in os.walk(folder) for name in names]


def _memoised(path: Path, memo: dict[str, object]) -> tuple[str, bool]:
    """``path``'s digest from ``memo`` or computed, and whether ``memo`` gained a record."""
    key = str(path.resolve())
    before = stamp(path)
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == before and _is_hex(entry.get("sha256")):
        return str(entry["sha256"]), False
    digest = sha256_file(path)
    after = stamp(path)
    if after == before and time.time_ns() - after[4] > RACY_NS:
        memo[key] = {"stamp": after, "sha256": digest}
        return digest, True
    return digest, False


def forget(path: Path, memo_dir: Path) -> None:
    """Drop ``path``'s record, e.g. when the file is removed or rebuilt."""
    memo = _read(memo_dir)
    if memo.pop(str(path.resolve()), None) is not None:
        _write(memo_dir, memo)


def _is_hex(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


def _read(memo_dir: Path) -> dict[str, object]:
    try:
        memo = json.loads((memo_dir / MEMO).read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write(memo_dir: Path, memo: dict[str, object]) -> None:
    # Records of files that are gone are dropped, so the memo cannot grow without bound.
    memo = {k: v for k, v in memo.items() if Path(k).exists()}
    # A read-only or full DATA_DIR only means the next run computes the digest again.
    with contextlib.suppress(OSError):
        write_json(memo_dir / MEMO, memo)
