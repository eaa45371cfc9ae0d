"""No figure: the generated data of the GPU campaign's (b) and (c) rows.

Uniformly random uint8 images in the fast.ai layout (``cifar10/{train,test}/<class>/*.png``):
nothing can be learnt from them, but they cost what real images cost to decode, move and train.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from job.data import CIFAR_CLASSES as CLASSES


def write_archive(path: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write ``n_train`` + ``n_test`` random 32×32 RGB PNGs as a fast.ai-layout ``.tgz``."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    workers = max(1, min(16, (os.cpu_count() or 1)))
    # PNG encoding dominates (it runs in Python, an image at a time), so it is spread over the
    # CPUs; spawned workers keep clear of whatever the parent has initialised (CUDA, threads).
    ctx = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(workers, mp_context=ctx) as pool,
        # Level 1: random pixels do not compress anyway, and this keeps generation quick.
        tarfile.open(tmp, "w:gz", compresslevel=1) as tar,
    ):
        for split, n in (("train", n_train), ("test", n_test)):
            images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            chunks = np.array_split(images, max(1, n // _CHUNK))
            i = 0
            for blobs in pool.map(_pngs, chunks):
                for blob in blobs:
                    _add(tar, f"cifar10/{split}/{CLASSES[i % len(CLASSES)]}/{i:05d}.png", blob)
                    i += 1
    tmp.replace(path)
    return path


_CHUNK = 2000  # images per worker task


def _pngs(images: np.ndarray) -> list[bytes]:
    out = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
