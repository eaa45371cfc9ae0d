"""The device loader: crops, flips and normalisation at any IMAGE_SIZE, and streamed batches from
a memory map equal to the resident ones."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from job.loader import DeviceLoader, _reflect_pad, padding
from job.preprocess import CIFAR10, Preprocess

OWN = Preprocess(size=64, mean=(0.61, 0.52, 0.40), std=(0.27, 0.22, 0.31))
"""Statistics of some other data set: anything but CIFAR-10's."""


def _images(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    return x, torch.arange(n) % 10


def _normalise(nhwc: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """The loader's documented normalisation: x * 1/(255 std) + (-mean/std), as one
    multiply-add on NHWC uint8, permuted to NCHW."""
    std, mean = torch.tensor(preprocess.std), torch.tensor(preprocess.mean)
    return torch.addcmul(-mean / std, nhwc.float(), 1.0 / (255.0 * std)).permute(0, 3, 1, 2)


def _expected_batch(
    x: torch.Tensor, seed: int, epoch: int, batch: int, preprocess: Preprocess
) -> torch.Tensor:
    """The first batch of ``epoch``, recomputed the way the loader documents it: one CPU
    generator per (seed, epoch) draws the order, the crop offsets and the flips; reflect
    padding of size // 8 (torch's F.pad); crop; flip; normalise."""
    n, size = len(x), x.shape[-1]
    pad = size // 8
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=gen)
    shifts = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    padded = F.pad(x.float(), (pad,) * 4, mode="reflect").to(torch.uint8)
    crops = []
    for j in range(batch):
        dy, dx = shifts[j].tolist()
        crop = padded[order[j], :, dy : dy + size, dx : dx + size]
        crops.append(crop.flip(2) if flips[j] else crop)
    return _normalise(torch.stack(crops).permute(0, 2, 3, 1), preprocess)


@pytest.mark.parametrize(
    ("size", "preprocess"),
    [(32, CIFAR10), (64, OWN), (96, Preprocess(96, OWN.mean, OWN.std))],
    ids=["32-cifar", "64", "96"],
)
def test_train_batches_are_reflect_padded_crops_and_flips(size, preprocess) -> None:
    preprocess = Preprocess(size, preprocess.mean, preprocess.std)
    x, y = _images(60, size)
    loader = DeviceLoader(x, y, 25, train=True, seed=3, preprocess=preprocess)
    batch, labels = next(iter(loader.epoch(2)))
    # Bit for bit: at 32 with CIFAR-10's constants these are the batches of the loader before
    # IMAGE_SIZE existed (4 px of padding, the tutorial's normalisation, the same draws).
    assert torch.equal(batch, _expected_batch(x, 3, 2, 25, preprocess))
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 2)
    assert torch.equal(labels, y[torch.randperm(60, generator=gen)[:25]])


@pytest.mark.parametrize(("size", "pad"), [(8, 1), (32, 4), (40, 5), (64, 8), (96, 12)])
def test_padding_is_an_eighth_of_the_side(size: int, pad: int) -> None:
    assert padding(size) == pad


@pytest.mark.parametrize("preprocess", [CIFAR10, Preprocess(32, OWN.mean, OWN.std)])
def test_eval_batches_are_in_order_unaugmented_and_normalised(preprocess) -> None:
    x, y = _images(130, 32)
    batches = list(DeviceLoader(x, y, 64, train=False, preprocess=preprocess).epoch())
    got = torch.cat([b for b, _ in batches])
    want = (x.float() / 255 - torch.tensor(preprocess.mean).view(3, 1, 1)) / torch.tensor(
        preprocess.std
    ).view(3, 1, 1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert torch.equal(torch.cat([lab for _, lab in batches]), y)


@pytest.mark.parametrize(("epoch_a", "epoch_b", "same"), [(1, 1, True), (1, 2, False)])
def test_epoch_draws_depend_only_on_seed_and_epoch(epoch_a, epoch_b, same) -> None:
    x, y = _images(130, 32)
    a = next(iter(DeviceLoader(x, y, 40, train=True, seed=1).epoch(epoch_a)))[0]
    b = next(iter(DeviceLoader(x, y, 40, train=True, seed=1).epoch(epoch_b)))[0]
    assert torch.equal(a, b) is same


@pytest.mark.parametrize("size", [32, 64, 96])
def test_batches_are_channels_last_at_the_images_size(size: int) -> None:
    x, y = _images(20, size)
    loader = DeviceLoader(x, y, 16, train=True, preprocess=Preprocess(size, OWN.mean, OWN.std))
    batch, _ = next(iter(loader.epoch()))
    assert batch.shape == (16, 3, size, size)
    assert batch.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("n", "batch", "train", "expected"),
    [(130, 50, True, 3), (101, 50, True, 2), (101, 50, False, 3), (100, 50, True, 2)],
)
@pytest.mark.parametrize("streamed", [False, True])
def test_length_drops_only_a_training_batch_of_one(n, batch, train, expected, streamed) -> None:
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    labels = torch.zeros(n, dtype=torch.long)
    loader = DeviceLoader(x, labels, batch, train=train, streamed=streamed)
    assert len(loader) == expected == len(list(loader.epoch()))


@pytest.mark.parametrize(
    ("shape", "pad"),
    [
        ((5, 3, 32, 32), 4),
        ((2, 1, 9, 7), 4),
        ((1, 3, 5, 5), 1),
        ((2, 3, 64, 64), 8),
        ((2, 3, 96, 96), 12),
        ((2, 3, 8, 8), 1),
    ],
)
def test_padding_is_torchs_reflect_pad(shape: tuple[int, ...], pad: int) -> None:
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    expected = F.pad(images.float(), (pad,) * 4, mode="reflect").to(torch.uint8)
    assert torch.equal(_reflect_pad(images.permute(0, 2, 3, 1), pad), expected.permute(0, 2, 3, 1))


# -- streamed from a memory map ------------------------------------------------------------


def _memory_map(tmp: Path, images: torch.Tensor) -> torch.Tensor:
    """``images`` saved as .npy and mapped back read-only, as the data cache serves a split
    too large to copy."""
    np.save(tmp / "images.npy", images.numpy())
    mapped = np.load(tmp / "images.npy", mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only: nothing writes to it
        return torch.from_numpy(mapped)


@pytest.mark.parametrize("size", [32, 64, 96])
@pytest.mark.parametrize(("train", "epoch"), [(True, 1), (True, 4), (False, 0)])
def test_streamed_batches_equal_resident_batches(tmp_path, size, train, epoch) -> None:
    x, y = _images(75, size, seed=size)
    preprocess = Preprocess(size, OWN.mean, OWN.std)
    mapped = _memory_map(tmp_path, x)
    resident = DeviceLoader(x, y, 20, train=train, seed=5, preprocess=preprocess)
    streamed = DeviceLoader(
        mapped, y, 20, train=train, seed=5, preprocess=preprocess, streamed=True
    )
    pairs = list(zip(resident.epoch(epoch), streamed.epoch(epoch), strict=True))
    assert len(pairs) == len(resident)
    for (a, labels_a), (b, labels_b) in pairs:
        assert torch.equal(a, b) and torch.equal(labels_a, labels_b)
        assert b.is_contiguous(memory_format=torch.channels_last)


def test_a_streamed_split_stays_in_its_memory_map(tmp_path) -> None:
    x, y = _images(40, 32)
    mapped = _memory_map(tmp_path, x)
    loader = DeviceLoader(mapped, y, 16, train=True, streamed=True)
    assert loader.images.data_ptr() == mapped.data_ptr()  # not copied


def test_stopping_a_streamed_epoch_early_ends_its_reader(tmp_path) -> None:
    x, y = _images(100, 32)
    loader = DeviceLoader(_memory_map(tmp_path, x), y, 10, train=True, streamed=True)
    batches = loader.epoch(1)
    next(batches)
    batches.close()  # as a SIGTERM's StoppedError leaves the training loop
    assert not [t for t in threading.enumerate() if t.name.startswith("resnet-job-stream")]


def test_images_of_another_size_than_the_preprocessing_are_refused() -> None:
    x, y = _images(4, 64)
    with pytest.raises(ValueError, match=r"\(64, 64\) px given to a loader for 32 px"):
        DeviceLoader(x, y, 2, train=False, preprocess=CIFAR10)
