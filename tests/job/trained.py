"""Real trained runs for the tests of the exported model and the predictor: CIFAR-10 at 32
pixels, and folders of real pictures (CIFAR-10's test PNGs re-encoded as JPEG) at 64 and 96
pixels with 2 and 37 classes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from tests.conftest import job_env, run_job
from tests.job.pictures import cifar_pictures, regroup, write_folder


@dataclass(frozen=True)
class Trained:
    """A finished run: its OUTPUT_DIR and PROMOTE_DIR, test split and figures."""

    output: Path
    promote_dir: Path
    images: torch.Tensor  # the run's own test images, uint8 NCHW at its IMAGE_SIZE
    labels: torch.Tensor
    val_acc: float
    size: int
    classes: int
    pictures: Path | None  # the folder of pictures it trained on (train/ and test/), if any


RUNS = {"cifar-32px-10": (32, 10), "jpeg-64px-2": (64, 2), "jpeg-96px-37": (96, 37)}
"""The runs exported: (IMAGE_SIZE, classes). CIFAR-10's python archive at 32; the real
CIFAR-10 test pictures as JPEG folders (train/ + test/) for the others."""


def _pictures(name: str, real: Path, tmp: Path) -> Path | None:
    """The folder run ``name`` trains on; None for the CIFAR-10 archive."""
    size, classes = RUNS[name]
    if name.startswith("cifar"):
        return None
    return write_folder(tmp / "pictures", regroup(cifar_pictures(real, 40), classes), size=size)


def train(name: str, archives: dict[str, Path], real: Path, tmp: Path) -> Trained:
    """One real run (fp32 on the CPU) promoted to a PROMOTE_DIR, and its test images."""
    from job.config import from_env
    from job.data import load_dataset

    size, classes = RUNS[name]
    pictures = _pictures(name, real, tmp)
    env = job_env(
        tmp,
        DATA_URL=(pictures or archives["python"]).as_uri(),
        IMAGE_SIZE=size,
        PRECISION="fp32",
        BATCH_SIZE=32,
        TEST_LIMIT=150,
        PROMOTE_DIR=tmp / "promote",
    )
    result = run_job(env)
    assert result.code == 0, result.stderr
    data = load_dataset(from_env(env))  # the same variables: the same test subset
    val_acc = json.loads((tmp / "output" / "metrics.json").read_text())["val_acc"]
    images, labels = data.test_images, data.test_labels
    output, promote = tmp / "output", tmp / "promote"
    return Trained(output, promote, images, labels, val_acc, size, classes, pictures)


def shared(
    name: str, archives: dict[str, Path], real: Path, factory: pytest.TempPathFactory
) -> Trained:
    """Run ``name`` once per test session, in whichever xdist worker asks first; the other
    worker and later modules wait for it and reuse it (the tests only read a run). Training
    is most of these tests' time, and both cores are busy with other tests meanwhile."""
    base = factory.getbasetemp()
    # Under xdist each worker has its own base; their parent is this session's alone.
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained"
    root.mkdir(exist_ok=True)
    saved = root / f"{name}.pt"
    with FileLock(str(root / f"{name}.lock")):
        if not saved.is_file():
            (root / name).mkdir()
            torch.save(train(name, archives, real, root / name), saved)
    return torch.load(saved, weights_only=False)
