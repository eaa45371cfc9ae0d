"""Decode a source into the arrays of the cache: images, labels, classes, statistics, report.

CIFAR-10 keeps today's arrays exactly: its python batches are read as they always were, and a
``train/`` + ``test/`` source whose classes are exactly CIFAR-10's, all PNG files of 32 × 32,
is the fast.ai layout, in the archive's order, with the tutorial's normalisation. Any other
source is a folder of labelled pictures (:mod:`job.data.layout`), decoded in parallel
(:mod:`job.data.pool`) and normalised with its training split's statistics.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from job import threads
from job.data import archive, layout, pool, sources, summary
from job.data.archive import CIFAR_CLASSES
from job.data.images import resize_array
from job.errors import DataError
from job.events import log
from job.preprocess import CIFAR10, Preprocess

Allocate = Callable[[str, int, int], np.ndarray]
"""``allocate(split, n, size)``: a zeroed (n, 3, size, size) uint8 array to decode into."""

_MIN_STD = 1 / 255  # a channel that never varies is scaled as if by one grey level


def in_memory(split: str, n: int, size: int) -> np.ndarray:
    """The default :data:`Allocate`: an array in memory."""
    return np.zeros((n, 3, size, size), np.uint8)


def decode_archive(
    source: Path,
    url: str,
    *,
    size: int = 32,
    fraction: float = 0.2,
    bad: str = "fail",
    allocate: Allocate = in_memory,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode a tar or zip archive or a folder into the cache's arrays, in ``workers``
    processes (default: the CPUs the container may use)."""
    log(f"decoding {source.name} …")
    listing = sources.list_source(source, url)
    batches = {
        m.group(1): sources.read(ref)
        for name, ref in listing.files.items()
        if (m := archive.BATCH.search(name))
    }
    if all(b in batches for b in archive.BATCHES):
        return _python_layout(batches, url, size)
    found = layout.arrange(listing.folders, listing.files, fraction, url)
    workers = workers or threads.available_cpus()
    return _pictures(listing, found, url, size=size, bad=bad, allocate=allocate, workers=workers)


def _pictures(
    listing: sources.Listing,
    found: layout.Layout,
    url: str,
    *,
    size: int,
    bad: str,
    allocate: Allocate,
    workers: int,
) -> dict[str, np.ndarray]:
    """Decode a picture layout's splits, refuse or skip bad files, and describe the result."""
    splits = {"train": found.train, "test": found.test}
    total = len(found.train) + len(found.test)
    log(
        f"{total} images of {len(found.classes)} classes, at {size} px in "
        f"{min(workers, total)} processes"
    )
    decoded = {
        split: pool.decode_split(
            [listing.files[name] for name, _ in items],
            size,
            allocate(split, len(items), size),
            workers,
        )
        for split, items in splits.items()
    }
    skipped = _bad_images(splits, decoded, bad, url)
    cifar = _is_cifar(found, decoded)
    preprocess = CIFAR10 if cifar else _statistics(decoded["train"], size)
    preprocess = Preprocess(size=size, mean=preprocess.mean, std=preprocess.std)
    arrays: dict[str, np.ndarray] = {}
    files = {}
    for split, items in splits.items():
        ok = decoded[split].ok
        arrays[f"{split}_images"] = _compacted(decoded[split].images, ok)
        arrays[f"{split}_labels"] = np.array([lab for _, lab in items], np.int64)[ok]
        files[split] = _kept(items, decoded[split])
    _check_left(arrays, found.classes, url)
    kind = "fastai" if cifar else found.kind
    report = summary.data_report(
        layout=kind,
        classes=found.classes,
        labels={s: arrays[f"{s}_labels"] for s in splits},
        files=files,
        skipped=skipped,
        other_files=listing.other_files,
        preprocess=preprocess,
        fraction=None if found.kind == "split" else _fraction(found),
    )
    return arrays | _extras(found.classes, kind, preprocess, report)


def _fraction(found: layout.Layout) -> float:
    return round(len(found.test) / (len(found.train) + len(found.test)), 4)


def _extras(
    classes: tuple[str, ...] | list[str], kind: str, preprocess: Preprocess, report: dict
) -> dict[str, np.ndarray]:
    return {
        "classes": np.array(list(classes)),
        "layout": np.array(kind),
        "mean": np.array(preprocess.mean),
        "std": np.array(preprocess.std),
        "report": np.array(json.dumps(report)),
    }


def _kept(items: list[tuple[str, int]], decoded: pool.Decoded) -> dict[str, list[str]]:
    """What the report needs of each decoded file, in the arrays' order."""
    keep = np.flatnonzero(decoded.ok)
    return {
        "name": [items[i][0] for i in keep],
        "size": [decoded.sizes[i] for i in keep],
        "mode": [decoded.modes[i] for i in keep],
        "hash": [decoded.hashes[i] for i in keep],
    }


def _bad_images(
    splits: dict[str, list[tuple[str, int]]], decoded: dict[str, pool.Decoded], bad: str, url: str
) -> list[tuple[str, str]]:
    """The files that did not decode, as (name, reason): refused unless BAD_IMAGES=skip."""
    failed = [(splits[s][i][0], why) for s in splits for i, why in decoded[s].errors]
    if failed and bad != "skip":
        total = sum(len(items) for items in splits.values())
        first = "; ".join(f"{name}: {why}" for name, why in failed[:3])
        raise DataError(
            f"{len(failed)} of {total} images in the data at {url} cannot be decoded (first: "
            f"{first}); fix or remove them, or set BAD_IMAGES=skip to leave them out."
        )
    if failed:
        log(f"skipped {len(failed)} images that cannot be decoded (BAD_IMAGES=skip)")
    return failed


def _compacted(images: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``images[ok]`` in place (a memory map stays one): rows only ever move forward."""
    if ok.all():
        return images
    keep = np.flatnonzero(ok)
    for start in range(0, len(keep), pool.CHUNK):
        rows = keep[start : start + pool.CHUNK]
        images[start : start + len(rows)] = images[rows]
    return images[: len(keep)]


def _check_left(arrays: dict[str, np.ndarray], classes: tuple[str, ...], url: str) -> None:
    """After skipping, every class must still have training images."""
    counts = np.bincount(arrays["train_labels"], minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(
            f"The data at {url} has no decodable training images of {empty[:5]} once the bad "
            "files are skipped; fix or replace those files."
        )


def _is_cifar(found: layout.Layout, decoded: dict[str, pool.Decoded]) -> bool:
    """The fast.ai CIFAR-10 layout: train/ + test/, CIFAR-10's classes, every file a 32 × 32
    PNG that decoded (then its pixels are exactly what the job decoded before)."""
    return (
        found.kind == "split"
        and found.classes == CIFAR_CLASSES
        and all(name.lower().endswith(".png") for name, _ in [*found.train, *found.test])
        and all(d.ok.all() and set(d.sizes) <= {"32x32"} for d in decoded.values())
    )


def _statistics(train: pool.Decoded, size: int) -> Preprocess:
    """Per-channel mean and standard deviation of the training images, on the 0…1 scale."""
    count = max(1, int(train.ok.sum())) * size * size
    mean = train.sums[:3] / count
    std = np.sqrt(np.maximum(train.sums[3:] / count - mean * mean, 0.0))
    std = np.maximum(std, _MIN_STD)
    return Preprocess(
        size=size,
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
    )


def _python_layout(batches: dict[str, bytes], url: str, size: int) -> dict[str, np.ndarray]:
    """CIFAR-10's python batches, resized when IMAGE_SIZE is not 32, with the tutorial's
    normalisation; the report lists no files (the batches have none)."""
    import hashlib

    arrays = archive.decode_batches(batches, url)
    hashes = {
        split: [hashlib.sha256(img.tobytes()).hexdigest() for img in arrays[f"{split}_images"]]
        for split in ("train", "test")
    }
    if size != 32:
        for split in ("train", "test"):
            hwc = arrays[f"{split}_images"].transpose(0, 2, 3, 1)
            arrays[f"{split}_images"] = np.stack([resize_array(p, size) for p in hwc]).transpose(
                0, 3, 1, 2
            )
    preprocess = Preprocess(size=size, mean=CIFAR10.mean, std=CIFAR10.std)
    classes = [str(c) for c in arrays["classes"]]
    files = {}
    for split in ("train", "test"):
        n = len(arrays[f"{split}_labels"])
        names = [f"{split}[{i}]" for i in range(n)]
        files[split] = {"name": names, "size": ["32x32"] * n, "mode": ["RGB"] * n}
        files[split]["hash"] = hashes[split]
    report = summary.data_report(
        layout="python",
        classes=classes,
        labels={s: arrays[f"{s}_labels"] for s in ("train", "test")},
        files=files,
        skipped=[],
        other_files=0,
        preprocess=preprocess,
        fraction=None,
    )
    return {k: v for k, v in arrays.items() if k.endswith(("images", "labels"))} | _extras(
        classes, "python", preprocess, report
    )
