import pytest
import torch
import torch.nn.functional as F

from job.loader import MEAN, PAD, STD, DeviceLoader, _reflect_pad


def _normalised(img: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (img.float() / 255 - mean) / std


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (130, 3, 32, 32), dtype=torch.uint8, generator=gen)
    return x, torch.arange(130) % 10


def test_train_batches_are_reflect_padded_crops_and_flips(images) -> None:
    x, y = images
    loader = DeviceLoader(x, y, 50, train=True, seed=3)
    batch, labels = next(iter(loader.epoch(2)))
    # Recompute the epoch's draws the way the loader documents them: one generator per epoch.
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 2)
    order = torch.randperm(130, generator=gen)
    shifts = torch.randint(0, 9, (130, 2), generator=gen)
    flips = torch.rand(130, generator=gen) < 0.5
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")
    for j in range(50):
        dy, dx = shifts[j].tolist()
        crop = padded[order[j], :, dy : dy + 32, dx : dx + 32]
        if flips[j]:
            crop = crop.flip(2)
        torch.testing.assert_close(batch[j], _normalised(crop), atol=1e-5, rtol=0)
        assert labels[j] == y[order[j]]


def test_eval_batches_are_in_order_and_unaugmented(images) -> None:
    x, y = images
    batches = list(DeviceLoader(x, y, 64, train=False).epoch())
    got = torch.cat([b for b, _ in batches])
    torch.testing.assert_close(got, torch.stack([_normalised(i) for i in x]), atol=1e-5, rtol=0)
    assert torch.equal(torch.cat([lab for _, lab in batches]), y)


@pytest.mark.parametrize(("epoch_a", "epoch_b", "same"), [(1, 1, True), (1, 2, False)])
def test_epoch_draws_depend_only_on_seed_and_epoch(images, epoch_a, epoch_b, same) -> None:
    x, y = images
    a = next(iter(DeviceLoader(x, y, 40, train=True, seed=1).epoch(epoch_a)))[0]
    b = next(iter(DeviceLoader(x, y, 40, train=True, seed=1).epoch(epoch_b)))[0]
    assert torch.equal(a, b) is same


def test_batches_are_channels_last(images) -> None:
    x, y = images
    batch, _ = next(iter(DeviceLoader(x, y, 16, train=True).epoch()))
    assert batch.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("n", "batch", "train", "expected"),
    [(130, 50, True, 3), (101, 50, True, 2), (101, 50, False, 3), (100, 50, True, 2)],
)
def test_length_drops_only_a_training_batch_of_one(n, batch, train, expected) -> None:
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    loader = DeviceLoader(x, torch.zeros(n, dtype=torch.long), batch, train=train)
    assert len(loader) == expected == len(list(loader.epoch()))


@pytest.mark.parametrize("shape", [(5, 3, 32, 32), (2, 1, 9, 7), (1, 3, 5, 5)])
def test_padding_is_torchs_reflect_pad(shape: tuple[int, ...]) -> None:
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    expected = F.pad(images.float(), (PAD,) * 4, mode="reflect").to(torch.uint8)
    assert torch.equal(_reflect_pad(images.permute(0, 2, 3, 1), PAD), expected.permute(0, 2, 3, 1))
