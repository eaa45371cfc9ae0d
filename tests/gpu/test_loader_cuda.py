"""The device loader on CUDA yields the batches it yields on the CPU for the same seed."""

from __future__ import annotations

import pytest
import torch

from job.loader import DeviceLoader

pytestmark = pytest.mark.gpu


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (250, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return images, torch.arange(250) % 10


@pytest.mark.parametrize(("train", "seed", "epoch"), [(True, 0, 1), (True, 7, 3), (False, 0, 0)])
def test_cuda_batches_equal_cpu_batches(cuda, train: bool, seed: int, epoch: int) -> None:
    images, labels = _data()
    on_cpu = DeviceLoader(images, labels, 64, train=train, seed=seed, device="cpu")
    on_cuda = DeviceLoader(images, labels, 64, train=train, seed=seed, device=cuda)
    cpu_batches = list(on_cpu.epoch(epoch))
    cuda_batches = list(on_cuda.epoch(epoch))
    assert len(cuda_batches) == len(cpu_batches)
    for (x_cpu, y_cpu), (x_cuda, y_cuda) in zip(cpu_batches, cuda_batches, strict=True):
        assert x_cuda.device.type == "cuda"
        assert x_cuda.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y_cuda.cpu(), y_cpu)
        # Same uint8 pixels; the normalising multiply-add may round differently by an ulp.
        torch.testing.assert_close(x_cuda.cpu(), x_cpu, atol=1e-5, rtol=0)
