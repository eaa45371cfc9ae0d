"""A small real filesystem for disk-full tests: a size-limited tmpfs mounted for one test.

Mounting needs root (CI runs as root); elsewhere the test skips with the reason through
:func:`tests.conftest.need`, which CI turns into a failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import need


def _mount(folder: Path, size_bytes: int, inodes: int | None) -> str | None:
    """Mount a tmpfs of ``size_bytes`` (and ``inodes`` files) on ``folder``; the reason it
    failed, or None."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs for disk-full tests needs root"
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes},mode=0777" + (f",nr_inodes={inodes}" if inodes else "")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}"
    return None


@contextlib.contextmanager
def small_volume(folder: Path, size_bytes: int, inodes: int | None = None) -> Iterator[Path]:
    """Mount a fresh tmpfs of ``size_bytes`` on ``folder`` for the ``with`` block; ``inodes``
    limits how many files and folders it holds (its root counts as one).

    Skips the test (fails it under RESNET_JOB_REQUIRE_ALL=1) where it cannot be mounted; the
    volume is unmounted at the end, whatever was left on it.
    """
    reason = _mount(folder, size_bytes, inodes)
    need(reason is None, reason or "")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s volume with one file until at most ``leave`` bytes stay free.

    Returns the filler file; deleting it gives the space back.
    """
    filler = folder / ".filler"
    stat = os.statvfs(folder)
    room = stat.f_bavail * stat.f_frsize - leave
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        chunk = b"\0" * (1 << 20)
        while room > 0:
            try:
                room -= os.write(fd, chunk[: min(room, len(chunk))])
            except OSError:  # full a little before the count said: that is full too
                break
    finally:
        os.close(fd)
    return filler


def leftovers(folder: Path) -> list[str]:
    """Temporary files an atomic write would leave behind (``.<name>.*.part``)."""
    return sorted(p.name for p in folder.rglob("*.part"))
