"""Get CIFAR-10: download, verify, read safely, decode once into a validated uint8 cache.

Concurrent jobs sharing one DATA_DIR take a file lock around all of it, so the first one
downloads and decodes while the others wait and then reuse its cache.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import posixpath
import re
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import numpy as np
import torch
from filelock import FileLock

from job import digest as digests
from job.config import Config
from job.errors import DataError
from job.events import log
from job.files import atomic_write
from job.resources import cache_bytes, free_bytes, is_no_space, size
from job.shortcuts import npz_arrays

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
_ATTEMPTS = 4  # download tries; waits between them grow 1 s, 2 s, 4 s
_TIMEOUT_S = 30.0  # per socket operation, so a stalled server cannot hang a job
_CHUNK = 1 << 20  # bytes per read while downloading
_CACHE_VERSION = 1


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
    data_dir = cfg.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"DATA_DIR={str(data_dir)!r} cannot be created ({exc.strerror}).") from None
    # 0666: runs under other uids sharing DATA_DIR (group 0 on OpenShift) take the same lock.
    with FileLock(str(data_dir / ".cifar10.lock"), mode=0o666):
        archive, downloaded = _fetch(cfg.data_url, data_dir)
        digest = digests.sha256(archive, data_dir)  # in full only when the archive changed
        if cfg.data_sha256 and digest != cfg.data_sha256:
            if downloaded:
                archive.unlink(missing_ok=True)
            raise DataError(
                f"The archive from {cfg.data_url} has sha256 {digest}, but DATA_SHA256 expects "
                f"{cfg.data_sha256}{' (the download was removed)' if downloaded else ''}; "
                "check the URL or the expected digest."
            )
        arrays = _load_cache(data_dir, digest)
        if arrays is None:
            try:
                arrays = decode_archive(archive, cfg.data_url)
            except DataError:
                if downloaded:
                    archive.unlink(missing_ok=True)
                raise
            _save_cache(data_dir, digest, arrays)
        # Inside the lock: the cache is memory-mapped, and only the images used are read.
        return _limited(arrays, digest, cfg)


# --- fetching ---------------------------------------------------------------------------


def _fetch(url: str, data_dir: Path) -> tuple[Path, bool]:
    """Return the archive's local path and whether it was downloaded (and may be removed)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.netloc + parsed.path))
        if not path.is_file():
            raise DataError(f"DATA_URL={url} names no readable file; check the path.")
        return path, False
    name = PurePosixPath(parsed.path).name or "cifar10.tgz"
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    target = data_dir / "downloads" / f"{tag}-{name}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(url, target)
    return target, True


class _Transient(Exception):
    """A download failure that may pass if tried again."""


def _download(url: str, target: Path) -> None:
    last = ""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _download_once(url, target)
            return
        except _Transient as exc:
            last = str(exc)
            if attempt < _ATTEMPTS:
                wait = 2 ** (attempt - 1)
                log(f"download of {url} failed ({last}); retrying in {wait} s")
                time.sleep(wait)
    raise DataError(f"Could not download {url} after {_ATTEMPTS} attempts: {last}.")


def _download_once(url: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    received, expected = 0, -1
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as resp, tmp.open("wb") as out:
            expected = int(resp.headers.get("Content-Length") or -1)
            _check_room(target.parent, expected, f"the archive from {url}")
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                received += len(chunk)
            if expected >= 0 and received != expected:
                raise _Transient(f"the body was truncated at {received} of {expected} bytes")
        os.replace(tmp, target)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise DataError(f"Could not download {url}: HTTP {exc.code} {exc.reason}.") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if is_no_space(exc):  # never transient: every retry would fill the volume again
            tmp.unlink(missing_ok=True)
            total = f" of {size(expected)}" if expected >= 0 else ""
            raise DataError(
                f"DATA_DIR={str(target.parent.parent)!r} ran out of space while downloading "
                f"the archive from {url} ({size(received)}{total} received, "
                f"{size(free_bytes(target.parent))} free with the partial download removed); "
                "free space there or point DATA_DIR at a larger volume."
            ) from None
        reason = getattr(exc, "reason", None) or exc
        raise _Transient(f"{type(exc).__name__}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _check_room(folder: Path, needed: int, what: str) -> None:
    """Fail at once, before writing, when ``folder`` (under DATA_DIR) has less than ``needed``
    bytes free; a negative ``needed`` (unknown) passes."""
    free = free_bytes(folder)
    if needed > free:
        data_dir = folder.parent if folder.name == "downloads" else folder
        raise DataError(
            f"DATA_DIR={str(data_dir)!r} has {size(free)} free, but {what} needs "
            f"{size(needed)}; free space there or point DATA_DIR at a larger volume."
        )


# --- reading archives -------------------------------------------------------------------

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


# --- the decoded cache ------------------------------------------------------------------


def _cache_path(data_dir: Path, digest: str) -> Path:
    return data_dir / f"cifar10-{digest[:16]}.v{_CACHE_VERSION}.npz"


def _save_cache(data_dir: Path, digest: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays, then their checksum: a cache without a matching one is never used.

    A DATA_DIR without room for it fails before writing (exit 3, naming the sizes); nothing
    half-written is left if it fills up meanwhile.
    """
    path = _cache_path(data_dir, digest)
    needed = cache_bytes(sum(a.nbytes for a in arrays.values()))
    _check_room(data_dir, needed, f"the decoded cache {path.name}")
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


def _load_cache(data_dir: Path, digest: str) -> dict[str, np.ndarray] | None:
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


def _limited(arrays: dict[str, np.ndarray], digest: str, cfg: Config) -> Dataset:
    """Apply TRAIN_LIMIT/TEST_LIMIT as fixed subsets drawn from SEED."""
    rng = np.random.default_rng(cfg.seed)
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
