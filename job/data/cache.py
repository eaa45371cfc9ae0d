"""The decoded cache: ``DATA_DIR/images-<key>.v2.npz`` and its checksum beside it.

The key is the data's sha256, IMAGE_SIZE, TEST_FRACTION and BAD_IMAGES: one decode per
dataset and size, shared by every trial and container that mounts DATA_DIR. A cache whose
checksum does not match is rebuilt, never used; the large arrays are stored uncompressed and
memory-mapped, so a run reads only the images it uses, and a dataset too large for memory is
decoded into memory maps and read in batches from the cache (``streamed``).
"""

from __future__ import annotations

import shutil
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from job import digest as digests
from job import resources
from job.config import Config
from job.data.build import decode_archive, in_memory
from job.data.fetch import check_room
from job.errors import DataError
from job.events import log
from job.files import atomic_write
from job.resources import cache_bytes, free_bytes, is_no_space, size

if TYPE_CHECKING:
    import torch

_VERSION = 2
STREAM_SHARE = 4
"""STREAM_DATA=auto streams when the decoded images exceed 1/STREAM_SHARE of the memory."""


@dataclass(frozen=True)
class Key:
    """What the decoded arrays depend on besides the code: the data and three variables."""

    digest: str
    image_size: int
    test_fraction: float
    bad_images: str

    def path(self, data_dir: Path) -> Path:
        tag = f"{self.digest[:16]}-{self.image_size}px-{self.test_fraction:g}-{self.bad_images}"
        return data_dir / f"images-{tag}.v{_VERSION}.npz"


def build_and_save(data_dir: Path, key: Key, source: Path, cfg: Config) -> dict[str, np.ndarray]:
    """Decode ``source`` and write the cache; a dataset too large for memory is decoded into
    memory maps in a staging folder of DATA_DIR, removed afterwards, and read back mapped."""
    staging = key.path(data_dir).with_suffix(".staging")
    shutil.rmtree(staging, ignore_errors=True)  # a crashed run's leftovers

    def allocate(split: str, n: int, side: int) -> np.ndarray:
        shape = (n, 3, side, side)
        if not _too_large(int(np.prod(shape))):
            return in_memory(split, n, side)
        # Room for the staged split and for the cache written from it.
        check_room(data_dir, 2 * int(np.prod(shape)), f"decoding {n} {split} images")
        staging.mkdir(exist_ok=True)
        return np.lib.format.open_memmap(staging / f"{split}.npy", "w+", np.uint8, shape)

    try:
        arrays = decode_archive(
            source,
            cfg.data_url,
            size=key.image_size,
            fraction=key.test_fraction,
            bad=key.bad_images,
            allocate=allocate,
        )
        save(data_dir, key, arrays)
        if not staging.exists():
            return arrays
        del arrays  # the memory maps of the staging folder, before it goes
        reread = load(data_dir, key)
        assert reread is not None  # just written and verified
        return reread
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _too_large(nbytes: int) -> bool:
    memory = resources.memory_limit()
    return memory is not None and nbytes * STREAM_SHARE > memory


def streamed(arrays: dict[str, np.ndarray], setting: str) -> bool:
    """STREAM_DATA resolved: 1 or 0, or (auto) whether the images are too large to copy."""
    if setting != "auto":
        return setting == "1"
    return _too_large(arrays["train_images"].nbytes + arrays["test_images"].nbytes)


def tensor_of_map(images: np.ndarray) -> torch.Tensor:
    """A tensor over the (read-only) memory map, not a copy: torch warns that writing to it
    would be undefined; nothing does."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(images)


def save(data_dir: Path, key: Key, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays, then their checksum: a cache without a matching one is never used.

    A DATA_DIR without room for it fails before writing (exit 3, naming the sizes); nothing
    half-written is left if it fills up meanwhile.
    """
    path = key.path(data_dir)
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


def load(data_dir: Path, key: Key) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when absent or not exactly what was written (then rebuilt).

    The cache's sha256 must match the one written beside it; it is computed in full only when
    the cache file changed since it was last verified (job/digest.py says why that is sound).
    The large arrays are memory-mapped, so a run reads only the images it uses.
    """
    from job.shortcuts import npz_arrays

    path = key.path(data_dir)
    check = path.with_suffix(".sha256")
    if not (path.is_file() and check.is_file()):
        return None
    try:
        if check.read_text().strip() != digests.sha256(path, data_dir):
            raise ValueError("checksum mismatch")
        arrays = npz_arrays(path)
        _check_shapes(arrays, key.image_size)
    except (OSError, ValueError, KeyError, zlib.error, zipfile.BadZipFile) as exc:
        log(f"decoded cache {path.name} is invalid ({exc}); rebuilding it")
        digests.forget(path, data_dir)
        path.unlink(missing_ok=True)
        check.unlink(missing_ok=True)
        return None
    return arrays


def _check_shapes(arrays: dict[str, np.ndarray], side: int) -> None:
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.shape[1:] != (3, side, side):
            raise ValueError(f"bad {split} images")
        if labels.shape != (len(images),):
            raise ValueError(f"bad {split} labels")
    missing = {"classes", "layout", "report", "mean", "std"} - arrays.keys()
    if missing:
        raise ValueError(f"no {sorted(missing)}")
    if arrays["mean"].shape != (3,) or arrays["std"].shape != (3,):
        raise ValueError("bad statistics")
