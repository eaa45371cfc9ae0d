"""Batches straight from device memory, with the tutorial's augmentation done in bulk.

The whole data set sits on the training device as uint8 (50,000 × 3 × 40 × 40 bytes ≈ 240 MB
for CIFAR-10 once reflect-padded); each batch is cropped, flipped and normalised by a few tensor
ops there, instead of per-image PIL work in DataLoader workers. A data set too large to copy
(``Dataset.streamed``: a read-only memory map) is streamed instead: each batch's images are
gathered on the host in file order, copied through pinned memory and augmented on the device
by the same ops, so its batches are the very ones the resident path gives.

The augmentation keeps its meaning at any ``IMAGE_SIZE``: reflect padding of ``size // 8`` px
(4 at 32, 8 at 64, 12 at 96), a random ``size × size`` crop and a horizontal flip, then the
model's own normalisation (:class:`job.preprocess.Preprocess`).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import torch

from job.preprocess import CIFAR10, Preprocess


def padding(size: int) -> int:
    """Pixels of reflect padding before a random ``size × size`` crop: an eighth of the side,
    rounded down (the tutorial's 4 px at 32), at least 1."""
    return max(1, size // 8)


class DeviceLoader:
    """Iterate (images, labels) batches of one split, shuffled and augmented when training.

    ``images`` are uint8 NCHW at ``preprocess.size``. Batches come out float32, normalised by
    ``preprocess``, in channels_last layout; all randomness for an epoch comes from a generator
    seeded by (seed, epoch), so a resumed run repeats it exactly. With ``streamed``, ``images``
    stay where they are (a memory map) and only each batch travels to the device.
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
        preprocess: Preprocess = CIFAR10,
        streamed: bool = False,
    ) -> None:
        if tuple(images.shape[2:]) != (preprocess.size, preprocess.size):
            raise ValueError(
                f"images of {tuple(images.shape[2:])} px given to a loader for "
                f"{preprocess.size} px: decode them at the model's size"
            )
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.streamed = streamed
        self.size = preprocess.size
        self.pad = padding(preprocess.size)
        self.labels = labels.to(self.device)
        self.n = len(labels)
        self.images = images if streamed else self._to_device(images)
        # x/255 then (x - mean)/std, folded into one multiply-add per element.
        std = torch.tensor(preprocess.std, device=self.device)
        mean = torch.tensor(preprocess.mean, device=self.device)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std
        self._offsets = torch.arange(self.size, device=self.device)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        """The split on the device, NHWC (reflect-padded when training).

        Stored NHWC: a crop then gathers whole 3-byte pixels, and the normalised batch,
        permuted back to NCHW, is channels_last without a copy.
        """
        nhwc = images.to(self.device).permute(0, 2, 3, 1)
        return _reflect_pad(nhwc, self.pad) if self.train else nhwc.contiguous()

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        # A final batch of one image would break BatchNorm in training; it is dropped.
        return full + (1 if rest > 1 or (rest == 1 and not self.train) else 0)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield this epoch's batches: shuffled, cropped and flipped when training."""
        if not self.train:
            yield from self._in_order()
            return
        # The draws come from a CPU generator on every device: CUDA's generator gives other
        # numbers for the same seed, and a seed must mean the same epoch on CPU and GPU. Every
        # crop offset and flip of the epoch is drawn at once and copied over once (≈ 0.6 MB
        # for 50,000 images), so there is still no per-step host synchronisation.
        gen = torch.Generator()
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n, generator=gen)
        shifts = torch.randint(0, 2 * self.pad + 1, (self.n, 2), generator=gen).to(self.device)
        flips = (torch.rand(self.n, generator=gen) < 0.5).to(self.device)
        on_device = order.to(self.device)
        bounds = [
            (b * self.batch_size, min((b + 1) * self.batch_size, self.n)) for b in range(len(self))
        ]
        if self.streamed:
            sources = self._streamed(order, on_device, bounds)
        else:
            sources = ((self.images, on_device[lo:hi]) for lo, hi in bounds)
        for (lo, hi), (padded, rows) in zip(bounds, sources, strict=True):
            augmented = self._augment(padded, rows, shifts[lo:hi], flips[lo:hi])
            yield augmented, self.labels[on_device[lo:hi]]

    def _streamed(
        self, order: torch.Tensor, on_device: torch.Tensor, bounds: list[tuple[int, int]]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Per batch: its images, reflect-padded on the device, and the row among them of each
        image of the batch. A batch is read from the memory map in file order (sorted indices:
        sequential reads), the next one on a thread while this one trains; the rows undo the
        sort inside the crop's gather, so the batch is the one the resident path gives."""
        if not bounds:
            return
        reads = [order[lo:hi].sort().values for lo, hi in bounds]
        with ThreadPoolExecutor(1, thread_name_prefix="resnet-job-stream") as reader:
            pending = reader.submit(self._host, reads[0])
            for b, (lo, hi) in enumerate(bounds):
                images = pending.result()
                if b + 1 < len(reads):
                    pending = reader.submit(self._host, reads[b + 1])
                nhwc = images.to(self.device, non_blocking=True).permute(0, 2, 3, 1)
                rows = on_device[lo:hi].sort().indices.argsort()
                yield _reflect_pad(nhwc, self.pad), rows

    def _host(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` of the memory-mapped images, copied into host memory (pinned for a
        CUDA device, so the copy to it is asynchronous)."""
        pinned = self.device.type == "cuda"
        out = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=pinned)
        return torch.index_select(self.images, 0, idx, out=out)

    def _in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The split in order, unaugmented."""
        for start in range(0, self.n, self.batch_size):
            end = start + self.batch_size
            if self.streamed:
                rows = torch.arange(start, min(end, self.n))
                nhwc = self._host(rows).to(self.device, non_blocking=True).permute(0, 2, 3, 1)
                images = nhwc.contiguous()
            else:
                images = self.images[start:end]
            yield self._normalise(images), self.labels[start:end]

    def _augment(
        self, padded: torch.Tensor, rows: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor
    ) -> torch.Tensor:
        """Crop image ``rows[j]`` of the padded NHWC ``padded`` at ``shifts[j]``, flipped
        where ``flips[j]``, for every j of the batch; normalised."""
        top = (shifts[:, 0:1] + self._offsets)[:, :, None]  # (B, size, 1)
        cols = shifts[:, 1:2] + self._offsets
        # Mirror the column index instead of flipping pixels: same result, one gather.
        cols = torch.where(flips[:, None], cols.flip(1), cols)[:, None, :]  # (B, 1, size)
        return self._normalise(padded[rows[:, None, None], top, cols])

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
