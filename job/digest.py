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
    key = str(path.resolve())
    memo = _read(memo_dir)
    before = stamp(path)
    entry = memo.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == before and _is_hex(entry.get("sha256")):
        return str(entry["sha256"])
    digest = sha256_file(path)
    after = stamp(path)
    if after == before and time.time_ns() - after[4] > RACY_NS:
        memo[key] = {"stamp": after, "sha256": digest}
        _write(memo_dir, memo)
    return digest


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
