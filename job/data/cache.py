"""The decoded cache: ``DATA_DIR/cifar10-<sha256>.v1.npz`` and its checksum beside it.

A cache whose checksum does not match is rebuilt, never used; the large arrays are memory-
mapped, so a run reads only the images it uses.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from job import digest as digests
from job.data.fetch import check_room
from job.errors import DataError
from job.events import log
from job.files import atomic_write
from job.resources import cache_bytes, free_bytes, is_no_space, size
from job.shortcuts import npz_arrays

_VERSION = 1


def _cache_path(data_dir: Path, digest: str) -> Path:
    return data_dir / f"cifar10-{digest[:16]}.v{_VERSION}.npz"


def save(data_dir: Path, digest: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays, then their checksum: a cache without a matching one is never used.

    A DATA_DIR without room for it fails before writing (exit 3, naming the sizes); nothing
    half-written is left if it fills up meanwhile.
    """
    path = _cache_path(data_dir, digest)
    needed = cache_bytes(sum(a.nbytes for a in arrays.values()))
    check_room(data_dir, needed, f"the decoded cache {path.name}")
    try:
        # numpy's stub reads **arrays as its allow_pickle flag.
        atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
        checksum = digests.sha256(path, data_dir)
        atomic_write(path.with_suffix(".sha256"), lambda f: f.write(checksum.encode()))
    except OSError as exc:
        if not is_no_space(exc):
            raise
        path.unlink(missing_ok=True)
        raise DataError(
            f"DATA_DIR={str(data_dir)!r} ran out of space while writing the decoded cache "
            f"{path.name} ({size(needed)} needed, {size(free_bytes(data_dir))} free); free "
            "space there or point DATA_DIR at a larger volume."
        ) from None


def load(data_dir: Path, digest: str) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or not exactly what was written (then rebuilt).

    The cache's sha256 must match the one written beside it; it is computed in full only when
    the cache file changed since it was last verified (job/digest.py says why that is sound).
    The large arrays are memory-mapped, so a run reads only the images it uses.
    """
    path = _cache_path(data_dir, digest)
    check = path.with_suffix(".sha256")
    if not (path.is_file() and check.is_file()):
        return None
    try:
        if check.read_text().strip() != digests.sha256(path, data_dir):
            raise ValueError("checksum mismatch")
        arrays = npz_arrays(path)
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if images.dtype != np.uint8 or images.shape[1:] != (3, 32, 32):
                raise ValueError(f"bad {split} images")
            if labels.shape != (len(images),):
                raise ValueError(f"bad {split} labels")
    except (OSError, ValueError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        log(f"decoded cache {path.name} is invalid ({exc}); rebuilding it")
        digests.forget(path, data_dir)
        path.unlink(missing_ok=True)
        check.unlink(missing_ok=True)
        return None
    return arrays
