"""Read a CIFAR-10 archive safely, as a stream, into uint8 NCHW arrays.

Two layouts: the fast.ai PNG folders and the official python batches. Members are checked by
name and type and never written to disk; pickles go through an unpickler that admits only
numpy arrays.
"""

from __future__ import annotations

import io
import pickle
import posixpath
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from job.errors import DataError
from job.events import log

CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_FASTAI = re.compile(r"(?:^|/)(train|test)/([^/]+)/[^/]+\.png$", re.IGNORECASE)
_BATCH = re.compile(r"(?:^|/)cifar-10-batches-py/(data_batch_[1-5]|test_batch|batches\.meta)$")


def _check_member(member: tarfile.TarInfo) -> None:
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
    if posixpath.isabs(member.name):
        raise DataError(f"refusing absolute member {member.name!r}")
    normal = posixpath.normpath(member.name)
    if normal == ".." or normal.startswith("../"):
        raise DataError(f"refusing unsafe member {member.name!r} (outside the archive's folder)")


def decode_archive(archive: Path, url: str) -> dict[str, np.ndarray]:
    """Decode either supported layout into uint8 NCHW arrays, reading every member safely.

    Members are checked by name and type and read from the stream, never written to disk,
    so nothing can land anywhere; pickles go through a restricted unpickler.
    """
    log(f"decoding {archive.name} …")
    # PNGs are decoded as they stream past, in this one thread: PIL spends most of its time
    # per 32×32 image in Python, so decoding threads only fight over the GIL (measured in
    # docs/benchmarks.md), and nothing waits for the whole tar to be read.
    fastai: dict[str, list[tuple[str, np.ndarray]]] = {"train": [], "test": []}
    batches: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                try:
                    _check_member(member)
                except DataError as exc:
                    raise DataError(f"The archive from {url} is unsafe: {exc.message}.") from None
                if not member.isfile():
                    continue
                if m := _FASTAI.search(member.name):
                    pixels = _decode_png(_read(tar, member), url)
                    fastai[m.group(1).lower()].append((m.group(2), pixels))
                elif m := _BATCH.search(member.name):
                    batches[m.group(1)] = _read(tar, member)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"The archive from {url} cannot be read ({type(exc).__name__}: {exc}); "
            "it is corrupt, truncated or not a tar archive."
        ) from None
    if fastai["train"] and fastai["test"]:
        return _stack_fastai(fastai, url)
    if all(f"data_batch_{i}" in batches for i in range(1, 6)) and "test_batch" in batches:
        return _decode_batches(batches, url)
    raise DataError(
        f"The archive from {url} is not CIFAR-10 in a known layout: expected "
        "cifar10/{train,test}/<class>/*.png or cifar-10-batches-py/data_batch_1…5 + test_batch."
    )


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    assert f is not None  # a regular file always has a stream
    return f.read()


def _stack_fastai(
    parts: dict[str, list[tuple[str, np.ndarray]]], url: str
) -> dict[str, np.ndarray]:
    """Stack decoded CHW images into NCHW arrays, labelled in ImageFolder's class order."""
    classes = sorted({cls for cls, _ in parts["train"]})
    index = {c: i for i, c in enumerate(classes)}
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes), "layout": np.array("fastai")}
    for split, items in parts.items():
        unknown = {cls for cls, _ in items} - index.keys()
        if unknown:
            raise DataError(
                f"The archive from {url} has {split} classes missing from train: {sorted(unknown)}."
            )
        images = np.empty((len(items), 3, 32, 32), dtype=np.uint8)
        np.stack([pixels for _, pixels in items], out=images)  # one copy, C order
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = np.array([index[c] for c, _ in items], dtype=np.int64)
    return arrays


def _decode_png(blob: bytes, url: str) -> np.ndarray:
    """One PNG as uint8 CHW (3×32×32), a view of PIL's HWC pixels."""
    # Imported here: only a run that decodes (a cold cache) needs PIL.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob), formats=("PNG",)) as img:
            pixels = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"The archive from {url} holds an unreadable image ({exc}).") from None
    if pixels.shape != (32, 32, 3):
        raise DataError(f"The archive from {url} holds a {pixels.shape} image, not 32×32 RGB.")
    return pixels.transpose(2, 0, 1)


class _RestrictedUnpickler(pickle.Unpickler):
    """Loads CIFAR's pickled dicts of numpy arrays and nothing else: no code can run."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            # Python 3's protocol-2 pickles spell bytes as _codecs.encode(str, "latin1").
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden global {module}.{name}")


def _unpickle(blob: bytes, what: str, url: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as exc:  # any malformed pickle is bad data, never a crash
        raise DataError(f"The archive from {url} has an invalid {what}: {exc}.") from None
    if not isinstance(obj, dict):
        raise DataError(f"The archive from {url} has an invalid {what}: not a dict.")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _decode_batches(batches: dict[str, bytes], url: str) -> dict[str, np.ndarray]:
    classes = list(CIFAR_CLASSES)
    if "batches.meta" in batches:
        names = _unpickle(batches["batches.meta"], "batches.meta", url).get("label_names")
        if isinstance(names, list) and names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    arrays: dict[str, np.ndarray] = {"classes": np.array(classes), "layout": np.array("python")}
    splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    for split, names in splits.items():
        images, labels = [], []
        for name in names:
            batch = _unpickle(batches[name], name, url)
            data, lab = batch.get("data"), batch.get("labels")
            if not (
                isinstance(data, np.ndarray)
                and data.dtype == np.uint8
                and data.ndim == 2
                and data.shape[1] == 3072
                and isinstance(lab, list)
                and len(lab) == len(data)
            ):
                raise DataError(f"The archive from {url} has a malformed {name}.")
            images.append(data.reshape(-1, 3, 32, 32))
            labels.extend(lab)
        arrays[f"{split}_images"] = np.concatenate(images)
        arrays[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        if arrays[f"{split}_labels"].min() < 0 or arrays[f"{split}_labels"].max() >= len(classes):
            raise DataError(f"The archive from {url} has labels outside 0…{len(classes) - 1}.")
    return arrays
