"""The decoded cache's row: images per second building it vs torchvision's ImageFolder.

``python -m bench decode --archive PATH``: both side by side in one run, for each side in
``--sizes``; prints a table, ``--json FILE`` writes the rows. docs/benchmarks.md, "Decoding
your own images", says what each side does.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.runs import timed
from bench.table import fixed_width
from job import threads
from job.files import write_json

_BATCH = 256  # images per DataLoader batch


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench decode", description=__doc__)
    p.add_argument("--archive", type=Path, required=True, help="a .tar, .tgz or .zip of pictures")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 96], help="sides in pixels")
    p.add_argument("--workers", type=int, default=0, help="processes; 0 = the CPUs available")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    workers = args.workers or threads.available_cpus()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        _extract(args.archive, Path(tmp))
        for side in args.sizes:
            ours = _job(args.archive, side, workers)
            theirs = _imagefolder(Path(tmp), side, workers)
            rows.append({"size": side, "workers": workers, **ours, **theirs})
    table: list[tuple[str, ...]] = [("side", "images", "workers", "job cache build", "ImageFolder")]
    for r in rows:
        rates = (f"{r[f'{who}_images_per_sec']:,.0f} img/s" for who in ("job", "torchvision"))
        table.append((f"{r['size']} px", str(r["images"]), str(r["workers"]), *rates))
    print("\n".join(fixed_width(table, ">>>>>")))
    if args.json:
        write_json(args.json, rows)
    return 0


def _job(archive: Path, side: int, workers: int) -> dict[str, float]:
    from job.data.build import decode_archive

    arrays, seconds = timed(decode_archive, archive, archive.as_uri(), size=side, workers=workers)
    n = len(arrays["train_labels"]) + len(arrays["test_labels"])
    return {"images": n, "job_seconds": seconds, "job_images_per_sec": n / seconds}


def _imagefolder(folder: Path, side: int, workers: int) -> dict[str, float]:
    from torch.utils.data import ConcatDataset, DataLoader
    from torchvision import datasets, transforms

    # Bicubic, as the job's decode: the same work on both sides.
    resize = transforms.Resize(side, transforms.InterpolationMode.BICUBIC)
    shape = transforms.Compose([resize, transforms.CenterCrop(side), transforms.PILToTensor()])
    roots = _class_roots(folder)
    data: Any = ConcatDataset([datasets.ImageFolder(r, transform=shape) for r in roots])
    loader = DataLoader(data, batch_size=_BATCH, num_workers=workers)
    # One pass: the loader's workers read, decode and resize as the sum pulls their batches.
    n, seconds = timed(sum, (len(images) for images, _ in loader))
    return {"torchvision_images": n, "torchvision_images_per_sec": n / seconds}


def _class_roots(folder: Path) -> list[Path]:
    """The folders of class folders ImageFolder reads: train/ and test/ (or val/, valid/), or
    the one folder of classes, inside one top folder or not."""
    from job.data.layout import TEST_SPLITS

    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(entries) == 1 and entries[0].is_dir():
        return _class_roots(entries[0])
    names = {p.name for p in entries}
    split = next((s for s in TEST_SPLITS if s in names), None)
    return [folder / "train", folder / split] if "train" in names and split else [folder]


def _extract(archive: Path, into: Path) -> None:
    """The archive extracted safely: tarfile's data filter; shutil's zip extraction skips the
    names that would land outside ``into``."""
    if zipfile.is_zipfile(archive):
        shutil.unpack_archive(archive, into, "zip")
    else:
        shutil.unpack_archive(archive, into, "tar", filter="data")
