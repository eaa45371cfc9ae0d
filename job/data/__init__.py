"""Get the data: fetch the archive or folder, verify it, decode it once into a checksummed cache.

The stage is four steps, each in a module of its own: :mod:`job.data.fetch` (a local file or
folder, or a download), the data's sha256 (:mod:`job.digest`, recomputed only when a file
changed), :mod:`job.data.cache` (the decoded arrays, or :mod:`job.data.build` to decode them),
then TRAIN_LIMIT/TEST_LIMIT. Concurrent jobs sharing one DATA_DIR take a file lock around all
of it, so the first one downloads and decodes while the others wait and then reuse its cache.
torch is imported only where tensors are made: decoding workers import this package without it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock

from job import digest as digests
from job.config import Config
from job.data import cache, sources
from job.data.archive import CIFAR_CLASSES
from job.data.build import decode_archive
from job.data.fetch import fetch
from job.errors import DataError
from job.preprocess import CIFAR10, Preprocess

if TYPE_CHECKING:
    import torch

__all__ = ["CIFAR_CLASSES", "Dataset", "decode_archive", "load_dataset"]

LOCK = ".cifar10.lock"
"""The file lock in DATA_DIR that concurrent runs take around fetching and decoding."""


@dataclass(frozen=True)
class Dataset:
    """Decoded images as uint8 NCHW tensors on the CPU (``preprocess.size`` square), with
    labels, provenance and what a model trained on them expects."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]
    """The class folders' names, sorted: label ``i`` is ``classes[i]``."""
    sha256: str
    layout: str
    """``fastai`` or ``python`` (CIFAR-10), ``split`` (train/ + test/) or ``holdout``."""
    preprocess: Preprocess = CIFAR10
    """The side and the normalisation: CIFAR-10's constants, else the training split's."""
    streamed: bool = False
    """True when the images are read-only memory maps of the cache, too large to copy: the
    loader then reads batches from them instead of copying the split."""
    report: dict[str, Any] = field(default_factory=dict)
    """The data report (docs/images.md: bad data and the data report)."""


def load_dataset(cfg: Config) -> Dataset:
    """Fetch, verify and decode the data named by DATA_URL, then apply the limits."""
    data_dir = _data_dir(cfg.data_dir)
    # 0666: runs under other uids sharing DATA_DIR (group 0 on OpenShift) take the same lock.
    with FileLock(str(data_dir / LOCK), mode=0o666):
        source, downloaded = fetch(cfg.data_url, data_dir)
        with _discarded_if_unusable(source, downloaded):
            digest = _verified(source, data_dir, cfg, downloaded=downloaded)
        key = cache.Key(digest, cfg.image_size, cfg.test_fraction, cfg.bad_images)
        arrays = cache.load(data_dir, key)
        if arrays is None:
            with _discarded_if_unusable(source, downloaded):
                arrays = cache.build_and_save(data_dir, key, source, cfg)
        # Inside the lock: the cache is memory-mapped, and only the images used are read.
        return _limited(arrays, digest, cfg)


@contextlib.contextmanager
def _discarded_if_unusable(archive: Path, downloaded: bool) -> Iterator[None]:
    """Remove a downloaded archive that turned out not to be usable (a DataError), so the
    next run downloads it again; a local file or folder is never touched."""
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


def _verified(source: Path, data_dir: Path, cfg: Config, *, downloaded: bool) -> str:
    """The data's sha256 (in full only when a file changed), checked against DATA_SHA256 when
    that is set: the archive's, or a folder's manifest's (:func:`job.digest.folder_sha256`)."""
    if source.is_dir():
        digest, what = digests.folder_sha256(source, data_dir, sources.is_ignored), "The folder"
    else:
        digest, what = digests.sha256(source, data_dir), "The archive"
    if cfg.data_sha256 and digest != cfg.data_sha256:
        raise DataError(
            f"{what} at {cfg.data_url} has sha256 {digest}, but DATA_SHA256 expects "
            f"{cfg.data_sha256}{' (the download was removed)' if downloaded else ''}; "
            "check the URL or the expected digest."
        )
    return digest


def _limited(arrays: dict[str, np.ndarray], digest: str, cfg: Config) -> Dataset:
    """Apply TRAIN_LIMIT/TEST_LIMIT as fixed subsets drawn from SEED; stream the splits that
    are too large to copy into memory."""
    import torch

    rng = np.random.default_rng(cfg.seed_number)
    streamed = cache.streamed(arrays, cfg.stream_data)
    picked = {}
    for split, limit in (("train", cfg.train_limit), ("test", cfg.test_limit)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if limit and limit < len(images):
            idx = np.sort(rng.permutation(len(images))[:limit])
            images, labels = images[idx], labels[idx]
        # Copies unless streamed: the cache's arrays may be read-only memory maps.
        pixels = cache.tensor_of_map(images) if streamed else torch.from_numpy(np.array(images))
        picked[split] = (pixels, torch.from_numpy(np.array(labels)))
    return Dataset(
        train_images=picked["train"][0],
        train_labels=picked["train"][1],
        test_images=picked["test"][0],
        test_labels=picked["test"][1],
        classes=tuple(str(c) for c in arrays["classes"]),
        sha256=digest,
        layout=str(arrays["layout"]),
        preprocess=Preprocess.from_json(
            {"size": cfg.image_size, "mean": arrays["mean"], "std": arrays["std"]}
        ),
        streamed=streamed,
        report={**json.loads(str(arrays["report"])), "sha256": digest},
    )
