"""Get CIFAR-10: fetch the archive, verify it, decode it once into a checksummed cache.

The stage is four steps, each in a module of its own: :mod:`job.data.fetch` (a local file or
a download), the archive's sha256 (:mod:`job.digest`, recomputed only when the file changed),
:mod:`job.data.cache` (the decoded arrays, or :mod:`job.data.archive` to decode them), then
TRAIN_LIMIT/TEST_LIMIT. Concurrent jobs sharing one DATA_DIR take a file lock around all of it,
so the first one downloads and decodes while the others wait and then reuse its cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from job import digest as digests
from job.config import Config
from job.data import cache
from job.data.archive import CIFAR_CLASSES, decode_archive
from job.data.fetch import fetch
from job.errors import DataError

__all__ = ["CIFAR_CLASSES", "Dataset", "decode_archive", "load_dataset"]


@dataclass(frozen=True)
class Dataset:
    """Decoded images as uint8 NCHW tensors on the CPU, with labels and provenance."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    sha256: str
    layout: str


def load_dataset(cfg: Config) -> Dataset:
    """Fetch, verify and decode the archive named by DATA_URL, then apply the limits."""
    data_dir = _data_dir(cfg.data_dir)
    # 0666: runs under other uids sharing DATA_DIR (group 0 on OpenShift) take the same lock.
    with FileLock(str(data_dir / ".cifar10.lock"), mode=0o666):
        archive, downloaded = fetch(cfg.data_url, data_dir)
        with _discarded_if_unusable(archive, downloaded):
            digest = _verified(archive, data_dir, cfg, downloaded=downloaded)
        arrays = cache.load(data_dir, digest)
        if arrays is None:
            with _discarded_if_unusable(archive, downloaded):
                arrays = decode_archive(archive, cfg.data_url)
            cache.save(data_dir, digest, arrays)
        # Inside the lock: the cache is memory-mapped, and only the images used are read.
        return _limited(arrays, digest, cfg)


@contextlib.contextmanager
def _discarded_if_unusable(archive: Path, downloaded: bool) -> Iterator[None]:
    """Remove a downloaded archive that turned out not to be usable CIFAR-10 (a DataError),
    so the next run downloads it again; a local file is never touched."""
    try:
        yield
    except DataError:
        if downloaded:
            archive.unlink(missing_ok=True)
        raise


def _data_dir(data_dir: Path) -> Path:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"DATA_DIR={str(data_dir)!r} cannot be created ({exc.strerror}).") from None
    return data_dir


def _verified(archive: Path, data_dir: Path, cfg: Config, *, downloaded: bool) -> str:
    """The archive's sha256 (in full only when the archive changed), checked against
    DATA_SHA256 when that is set."""
    digest = digests.sha256(archive, data_dir)
    if cfg.data_sha256 and digest != cfg.data_sha256:
        raise DataError(
            f"The archive from {cfg.data_url} has sha256 {digest}, but DATA_SHA256 expects "
            f"{cfg.data_sha256}{' (the download was removed)' if downloaded else ''}; "
            "check the URL or the expected digest."
        )
    return digest


def _limited(arrays: dict[str, np.ndarray], digest: str, cfg: Config) -> Dataset:
    """Apply TRAIN_LIMIT/TEST_LIMIT as fixed subsets drawn from SEED."""
    rng = np.random.default_rng(cfg.seed_number)
    picked = {}
    for split, limit in (("train", cfg.train_limit), ("test", cfg.test_limit)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if limit and limit < len(images):
            idx = np.sort(rng.permutation(len(images))[:limit])
            images, labels = images[idx], labels[idx]
        # Copies: the cache's arrays may be read-only memory maps.
        picked[split] = (torch.from_numpy(np.array(images)), torch.from_numpy(np.array(labels)))
    return Dataset(
        train_images=picked["train"][0],
        train_labels=picked["train"][1],
        test_images=picked["test"][0],
        test_labels=picked["test"][1],
        classes=tuple(str(c) for c in arrays["classes"]),
        sha256=digest,
        layout=str(arrays["layout"]),
    )
