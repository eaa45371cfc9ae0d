"""The loader on CUDA at other IMAGE_SIZEs, resident and streamed from a memory map through
pinned memory: the batches the CPU gives, at every size."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from job.loader import DeviceLoader
from job.preprocess import Preprocess

pytestmark = pytest.mark.gpu


def _mapped(tmp: Path, images: torch.Tensor) -> torch.Tensor:
    np.save(tmp / "images.npy", images.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only: nothing writes to it
        return torch.from_numpy(np.load(tmp / "images.npy", mmap_mode="r"))


@pytest.mark.parametrize("size", [32, 64, 96])
@pytest.mark.parametrize(("train", "epoch"), [(True, 2), (False, 0)])
def test_streamed_cuda_batches_equal_resident_cpu_batches(
    cuda, tmp_path: Path, size: int, train: bool, epoch: int
) -> None:
    gen = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (150, 3, size, size), dtype=torch.uint8, generator=gen)
    labels = torch.arange(150) % 7
    preprocess = Preprocess(size, (0.61, 0.52, 0.40), (0.27, 0.22, 0.31))
    settings = {"train": train, "seed": 3, "preprocess": preprocess}
    on_cpu = DeviceLoader(images, labels, 64, device="cpu", **settings)
    streamed = DeviceLoader(
        _mapped(tmp_path, images), labels, 64, device=cuda, streamed=True, **settings
    )
    pairs = list(zip(on_cpu.epoch(epoch), streamed.epoch(epoch), strict=True))
    assert len(pairs) == len(on_cpu)
    for (x_cpu, y_cpu), (x_cuda, y_cuda) in pairs:
        assert x_cuda.device.type == "cuda"
        assert x_cuda.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y_cuda.cpu(), y_cpu)
        # Same uint8 pixels; the normalising multiply-add may round differently by an ulp.
        torch.testing.assert_close(x_cuda.cpu(), x_cpu, atol=1e-5, rtol=0)
