"""Batches straight from device memory, with the tutorial's augmentation done in bulk.

The whole data set sits on the training device as uint8 (50,000 × 3 × 40 × 40 bytes ≈ 240 MB
once reflect-padded); each batch is cropped, flipped and normalised by a few tensor ops there,
instead of per-image PIL work in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from job.preprocess import CIFAR10

# The tutorial's normalisation statistics (per channel, on the 0…1 scale).
MEAN = CIFAR10.mean
STD = CIFAR10.std
PAD = 4  # pixels of reflect padding before the random 32×32 crop
SIZE = 32


class DeviceLoader:
    """Iterate (images, labels) batches of one split, shuffled and augmented when training.

    Images come out float32, normalised, in channels_last layout; all randomness for an epoch
    comes from a generator seeded by (seed, epoch), so a resumed run repeats it exactly.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.labels = labels.to(self.device)
        # Stored NHWC: a crop then gathers whole 3-byte pixels, and the normalised batch,
        # permuted back to NCHW, is channels_last without a copy.
        images = images.to(self.device).permute(0, 2, 3, 1)
        self.images = _reflect_pad(images, PAD) if train else images.contiguous()
        self.n = len(labels)
        # x/255 then (x - mean)/std, folded into one multiply-add per element.
        std = torch.tensor(STD, device=self.device)
        mean = torch.tensor(MEAN, device=self.device)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std
        self._offsets = torch.arange(SIZE, device=self.device)

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        # A final batch of one image would break BatchNorm in training; it is dropped.
        return full + (1 if rest > 1 or (rest == 1 and not self.train) else 0)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this epoch's batches: shuffled, cropped and flipped when training."""
        if not self.train:
            for start in range(0, self.n, self.batch_size):
                end = start + self.batch_size
                yield self._normalise(self.images[start:end]), self.labels[start:end]
            return
        # The draws come from a CPU generator on every device: CUDA's generator gives other
        # numbers for the same seed, and a seed must mean the same epoch on CPU and GPU. Every
        # crop offset and flip of the epoch is drawn at once and copied over once (≈ 0.6 MB
        # for 50,000 images), so there is still no per-step host synchronisation.
        gen = torch.Generator()
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n, generator=gen).to(self.device)
        shifts = torch.randint(0, 2 * PAD + 1, (self.n, 2), generator=gen).to(self.device)
        flips = (torch.rand(self.n, generator=gen) < 0.5).to(self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            lo = b * self.batch_size
            hi = lo + len(idx)
            yield self._augment(idx, shifts[lo:hi], flips[lo:hi]), self.labels[idx]

    def _augment(
        self, idx: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor
    ) -> torch.Tensor:
        rows = (shifts[:, 0:1] + self._offsets)[:, :, None]  # (B, 32, 1)
        cols = shifts[:, 1:2] + self._offsets
        # Mirror the column index instead of flipping pixels: same result, one gather.
        cols = torch.where(flips[:, None], cols.flip(1), cols)[:, None, :]  # (B, 1, 32)
        return self._normalise(self.images[idx[:, None, None], rows, cols])

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC → normalised float32 NCHW in channels_last memory."""
        return torch.addcmul(self._shift, images.float(), self._scale).permute(0, 3, 1, 2)


def _reflect_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """NHWC images reflect-padded by ``pad`` px on every side, as ``F.pad(mode="reflect")``.

    Done by slicing the uint8 images directly: no float copy of the whole set, so less memory
    traffic than padding a float copy, and any dtype on any device.
    """
    n, h, w, c = images.shape
    out = torch.empty((n, h + 2 * pad, w + 2 * pad, c), dtype=images.dtype, device=images.device)
    out[:, pad : pad + h, pad : pad + w] = images
    # Reflection mirrors about the edge pixel without repeating it: rows 1…pad go above.
    out[:, :pad, pad : pad + w] = images[:, 1 : pad + 1].flip(1)
    out[:, pad + h :, pad : pad + w] = images[:, h - pad - 1 : h - 1].flip(1)
    out[:, :, :pad] = out[:, :, pad + 1 : 2 * pad + 1].flip(2)
    out[:, :, pad + w :] = out[:, :, w - 1 : w + pad - 1].flip(2)
    return out
