"""No figure: the GPU campaign's archives: the real subset its search rows train on (``make
gpu-data``), and the generated data of its (b) and (c) rows (:func:`write_synthetic`).

``python -m bench.subset --train 15000 --test 5000 --out .gl/cifar10-subset.tgz``: a seeded,
class-balanced subset of the fast.ai archive (the first classes in name order take one more when
the count does not divide), the original PNG bytes in the same layout, byte-for-byte the same
for the same input and seed. Exit codes: 0 written; 2 bad input, with one sentence on stderr.
"""

from __future__ import annotations

import argparse
import gzip
import io
import multiprocessing
import os
import random
import re
import sys
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from bench.paths import ARCHIVE_HELP, SUBSET, command_parser, given_or_default
from job.data import CIFAR_CLASSES
from job.digest import sha256_file
from job.files import atomic_write

SPLITS = ("train", "test")
# Only members of exactly this shape are read; anything else in the archive is ignored.
_MEMBER = re.compile(r"^cifar10/(train|test)/([A-Za-z0-9_-]+)/([A-Za-z0-9_.-]+\.png)$")


class SubsetError(Exception):
    """Bad input: the message is one sentence naming the problem and the fix."""


def plan(
    members: dict[str, dict[str, list[str]]], counts: dict[str, int], seed: int
) -> dict[str, dict[str, list[str]]]:
    """Choose ``counts[split]`` file names per split, balanced over the classes, from ``seed``.

    ``members`` maps split → class → file names; the result has the same shape, names sorted.
    """
    rng = random.Random(seed)
    chosen: dict[str, dict[str, list[str]]] = {}
    for split in SPLITS:
        classes = sorted(members.get(split, {}))
        if not classes:
            raise SubsetError(
                f"the archive has no cifar10/{split}/<class>/*.png images; "
                "pass the fast.ai cifar10.tgz with --archive."
            )
        per_class, extra = divmod(counts[split], len(classes))
        chosen[split] = {}
        for i, cls in enumerate(classes):
            k = per_class + (1 if i < extra else 0)
            names = sorted(members[split][cls])
            if k > len(names):
                raise SubsetError(
                    f"--{split} {counts[split]} needs {k} images of class {cls!r}, but the "
                    f"archive has only {len(names)}; ask for at most "
                    f"{len(classes) * min(len(v) for v in members[split].values())}."
                )
            chosen[split][cls] = sorted(rng.sample(names, k))
    return chosen


def write_subset(archive: Path, out: Path, n_train: int, n_test: int, seed: int = 0) -> str:
    """Write the subset of ``archive`` to ``out``; return its sha256."""
    if not archive.is_file():
        raise SubsetError(f"no archive at {archive}; pass the fast.ai cifar10.tgz with --archive.")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            found = {m.name: m for m in tar if m.isfile() and _MEMBER.match(m.name)}
            members: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
            for name in found:
                split, cls, file = name.split("/")[1:]
                members[split][cls].append(file)
            chosen = plan(members, {"train": n_train, "test": n_test}, seed)
            wanted = {
                f"cifar10/{split}/{cls}/{file}"
                for split, classes in chosen.items()
                for cls, files in classes.items()
                for file in files
            }
            # Read in archive order: the gzip stream is then decompressed once more, forwards.
            blobs = {n: tar.extractfile(m).read() for n, m in found.items() if n in wanted}  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise SubsetError(
            f"cannot read {archive} as a .tgz ({exc}); pass the fast.ai cifar10.tgz with --archive."
        ) from None
    atomic_write(out, lambda raw: _write_tar(raw, chosen, blobs))
    return sha256_file(out)


def _write_tar(
    raw: IO[bytes], chosen: dict[str, dict[str, list[str]]], blobs: dict[str, bytes]
) -> None:
    # mtime=0 and an empty file name in the gzip header, zero times in the tar: reproducible.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        _add(tar, "cifar10/", None)
        for split in SPLITS:
            _add(tar, f"cifar10/{split}/", None)
            for cls, names in chosen[split].items():
                _add(tar, f"cifar10/{split}/{cls}/", None)
                for name in names:
                    path = f"cifar10/{split}/{cls}/{name}"
                    _add(tar, path, blobs[path])


def _add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.mtime = 0
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def write_synthetic(path: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write ``n_train`` + ``n_test`` random 32×32 RGB PNGs as a fast.ai-layout ``.tgz``.

    Uniformly random uint8 images: nothing can be learnt from them, but they cost what real
    images cost to decode, move and train.
    """
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
                    name = CIFAR_CLASSES[i % len(CIFAR_CLASSES)]
                    _add(tar, f"cifar10/{split}/{name}/{i:05d}.png", blob)
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


def _parser() -> argparse.ArgumentParser:
    p = command_parser("python -m bench.subset", __doc__)
    p.add_argument("--archive", type=Path, help=ARCHIVE_HELP)
    p.add_argument("--train", type=int, default=15_000, help="training images (all classes)")
    p.add_argument("--test", type=int, default=5_000, help="test images (all classes)")
    p.add_argument("--seed", type=int, default=0, help="which images are chosen")
    p.add_argument("--out", type=Path, default=SUBSET, help="the .tgz to write")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; prints what it wrote."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.train < 1 or args.test < 1:
        parser.error("--train and --test take a positive number of images")
    source = given_or_default(args.archive)
    try:
        digest = write_subset(source, args.out, args.train, args.test, args.seed)
    except SubsetError as exc:
        print(f"bench.subset: {exc}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size
    print(
        f"wrote {args.out}: {args.train:,} train / {args.test:,} test images, "
        f"{size / 1e6:.1f} MB, seed {args.seed}, sha256 {digest}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
