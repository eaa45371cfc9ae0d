"""Generate small, learnable CIFAR-shaped archives in both layouts the job accepts.

Each class is a distinct colour with a class-specific stripe and per-pixel noise, so a
small model learns it well above chance in a few CPU seconds, yet augmentation (crop,
flip) still matters.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from job.data import CIFAR_CLASSES as CLASSES


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n`` uint8 images (N, 32, 32, 3) and their labels (N,), classes balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    rng.shuffle(labels)
    palette = np.random.default_rng(1234).integers(30, 226, size=(len(CLASSES), 3))
    images = np.empty((n, 32, 32, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        img = np.broadcast_to(palette[label], (32, 32, 3)).astype(np.int16).copy()
        row = 3 * label
        img[row : row + 3, :, :] = 255 - img[row : row + 3, :, :]
        img += rng.integers(-25, 26, size=img.shape, dtype=np.int16)
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def png(image: np.ndarray) -> bytes:
    """One uint8 HWC image encoded as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def make_archive(
    path: Path, layout: str, n_train: int = 400, n_test: int = 200, seed: int = 0
) -> Path:
    """Write a ``.tgz`` in the fast.ai ("fastai") or official python-batches ("python") layout."""
    train = make_images(n_train, seed)
    test = make_images(n_test, seed + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        if layout == "fastai":
            for split, (images, labels) in (("train", train), ("test", test)):
                for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                    _add_bytes(tar, f"cifar10/{split}/{CLASSES[label]}/{i}.png", png(image))
            _add_bytes(tar, "cifar10/labels.txt", "\n".join(CLASSES).encode())
        elif layout == "python":
            chunks = np.array_split(np.arange(n_train), 5)
            for b, idx in enumerate(chunks, start=1):
                _add_bytes(tar, f"cifar-10-batches-py/data_batch_{b}", _batch(*train, idx))
            _add_bytes(tar, "cifar-10-batches-py/test_batch", _batch(*test, np.arange(n_test)))
            meta = {b"label_names": [c.encode() for c in CLASSES]}
            _add_bytes(tar, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        else:
            raise ValueError(f"unknown layout {layout!r}")
    return path


def _batch(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> bytes:
    # The official batches store rows of 3072 bytes: 1024 R, then G, then B (CHW order),
    # with bytes keys, as the Python 2 pickles they are.
    data = images[idx].transpose(0, 3, 1, 2).reshape(len(idx), 3072)
    return pickle.dumps(
        {b"data": np.ascontiguousarray(data), b"labels": [int(x) for x in labels[idx]]},
        protocol=2,
    )


# --- folders of labelled pictures (docs/images.md) -----------------------------------------

LITTER = {
    "__MACOSX/photos/cat/._0.jpg": b"\x00\x05\x16\x07 AppleDouble",
    "photos/.DS_Store": b"\x00\x00\x00\x01Bud1",
    "photos/.ipynb_checkpoints/dog/0-checkpoint.png": b"not a picture",
    "photos/.hidden/x.png": b"not a picture",
    "photos/README.txt": b"labelled photos",
}
"""Hidden files and archive litter that must be ignored, never taken for classes or images."""


def encode(
    image: np.ndarray, fmt: str, size: tuple[int, int] | None = None, **save: object
) -> bytes:
    """A uint8 HWC picture re-encoded as ``fmt`` (PNG, JPEG, WEBP, BMP, GIF), resized to
    ``size`` (width, height) first when given; ``save`` goes to Pillow (``exif=…``)."""
    img = Image.fromarray(image)
    if size is not None:
        img = img.resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def picture_files(
    *,
    split: bool,
    fmt: str = "JPEG",
    classes: tuple[str, ...] = ("cat", "dog", "ship"),
    per_class: int = 10,
    size: tuple[int, int] | None = (48, 40),
    top: str = "photos/",
    seed: int = 0,
) -> dict[str, bytes]:
    """``{name: bytes}`` of a picture dataset built from the CIFAR-shaped images, one CIFAR
    class per folder: ``top + <class>/<i>.<ext>``, or with ``train/`` and ``test/`` (a quarter
    of each class) when ``split``."""
    images, labels = make_images(len(CLASSES) * per_class * 2, seed)
    ext = {"JPEG": "jpg", "WEBP": "webp"}.get(fmt, fmt.lower())
    files = {}
    for cls in classes:
        mine = images[labels == CLASSES.index(cls)][:per_class]
        for i, image in enumerate(mine):
            where = ("test/" if i < per_class // 4 else "train/") if split else ""
            files[f"{top}{where}{cls}/{i}.{ext}"] = encode(image, fmt, size)
    return files


def write_pictures(dest: Path, files: dict[str, bytes], container: str) -> Path:
    """``files`` as a folder, a ``zip``, a ``tar`` or a ``tgz`` at ``dest``; returns its path."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if container == "folder":
        for name, data in files.items():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(data)
        return dest
    if container == "zip":
        path = dest.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in files.items():
                zf.writestr(name, data)
        return path
    path = dest.with_suffix({"tar": ".tar", "tgz": ".tgz"}[container])
    with tarfile.open(path, "w:gz" if container == "tgz" else "w") as tar:
        for name, data in files.items():
            _add_bytes(tar, name, data)
    return path
