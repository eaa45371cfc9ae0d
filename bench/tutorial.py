"""The tutorial column of rows (a)–(c) and of the GPU rows: the Jovian "05b" pipeline, re-made.

Independent of ``job/``: what the tutorial does, step by step (docs/benchmarks.md), plus a width
multiplier (``MODEL_WIDTH``) and seeded subsets (``TRAIN_LIMIT``/``TEST_LIMIT``).
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms as tt
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.datasets import ImageFolder

# The tutorial's normalisation statistics (per-channel mean, std) and recipe.
STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
EPOCHS, BATCH_SIZE, MAX_LR, WEIGHT_DECAY, GRAD_CLIP = 8, 400, 0.01, 1e-4, 0.1
NUM_WORKERS = 3  # the tutorial's DataLoader setting

# Written into the extraction folder once extractall() has finished: without it (an
# interrupted extraction) or for another archive, the folder is never reused.
EXTRACTED_MARKER = ".extracted.json"


def extract(archive: Path, dest: Path) -> Path:
    """Extract the fast.ai archive into ``dest`` and return ``dest/cifar10``."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / EXTRACTED_MARKER).unlink(missing_ok=True)
    with tarfile.open(archive, "r:*") as tar:
        # The tutorial calls extractall(); the "data" filter only adds path-safety checks.
        tar.extractall(path=dest, filter="data")
    root = dest / "cifar10"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        raise ValueError(f"{archive} is not the fast.ai layout (cifar10/{{train,test}}/<class>/)")
    (dest / EXTRACTED_MARKER).write_text(json.dumps(_identity(archive)))
    return root


def extracted(archive: Path, dest: Path, reuse: bool = True) -> tuple[Path, bool]:
    """``dest/cifar10``, extracted there unless ``reuse`` and :func:`is_extracted`; whether the
    earlier extraction was reused."""
    if reuse and is_extracted(archive, dest):
        return dest / "cifar10", True
    return extract(archive, dest), False


def is_extracted(archive: Path, dest: Path) -> bool:
    """Whether :func:`extract` completed into ``dest`` for this archive file, unchanged since."""
    try:
        return bool(json.loads((dest / EXTRACTED_MARKER).read_text()) == _identity(archive))
    except (OSError, ValueError):
        return False


def _identity(archive: Path) -> dict[str, Any]:
    # Path, size (bytes) and modification time (ns): hashing the whole archive would cost
    # what reuse saves, and these change whenever the file is replaced.
    st = archive.stat()
    return {"archive": str(archive.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def train_transforms() -> tt.Compose:
    """The tutorial's augmentation: reflect-pad crop, horizontal flip, tensor, normalise."""
    return tt.Compose(
        [
            tt.RandomCrop(32, padding=4, padding_mode="reflect"),
            tt.RandomHorizontalFlip(),
            tt.ToTensor(),
            tt.Normalize(*STATS, inplace=True),
        ]
    )


def subset(ds: Dataset, limit: int, seed: int) -> Dataset:
    """A fixed, seeded subset of ``limit`` items (``limit`` ≤ 0 or ≥ len: the whole set)."""
    n = len(ds)  # type: ignore[arg-type]
    if limit <= 0 or limit >= n:
        return ds
    gen = torch.Generator().manual_seed(seed)
    return Subset(ds, torch.randperm(n, generator=gen)[:limit].tolist())


def datasets(
    data_dir: Path, train_limit: int = 0, test_limit: int = 0, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """The tutorial's ImageFolder train and test sets over the extracted PNGs."""
    train_ds = ImageFolder(str(data_dir / "train"), train_transforms())
    valid_tfms = tt.Compose([tt.ToTensor(), tt.Normalize(*STATS)])  # the tutorial's: no augmenting
    valid_ds = ImageFolder(str(data_dir / "test"), valid_tfms)
    return subset(train_ds, train_limit, seed), subset(valid_ds, test_limit, seed + 1)


def loader(
    ds: Dataset, batch_size: int = BATCH_SIZE, num_workers: int = NUM_WORKERS, train: bool = True
) -> DataLoader:
    """The tutorial's DataLoader: shuffled training batches, or validation at twice the size."""
    # pin_memory=True as in the tutorial, but only where there is a GPU to pin for: on a
    # CPU-only machine it is a no-op that merely warns.
    return DataLoader(
        ds,
        batch_size if train else batch_size * 2,
        shuffle=train,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


def get_default_device() -> torch.device:
    """Pick GPU if available, else CPU (the tutorial's helper)."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def to_device(data: Any, device: torch.device) -> Any:
    """Move tensor(s) to the chosen device (the tutorial's helper)."""
    if isinstance(data, (list, tuple)):
        return [to_device(x, device) for x in data]
    return data.to(device, non_blocking=True)


class DeviceDataLoader:
    """Wrap a dataloader to move its batches to a device (the tutorial's class)."""

    def __init__(self, dl: DataLoader, device: torch.device) -> None:
        self.dl = dl
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        for b in self.dl:
            yield to_device(b, self.device)

    def __len__(self) -> int:  # fit_one_cycle's OneCycleLR sizes its schedule with it
        return len(self.dl)


def train_batches(png_root: Path, batch_size: int, device: torch.device) -> DeviceDataLoader:
    """The tutorial's augmented training batches over ``png_root/train``, moved to ``device``."""
    train_ds = ImageFolder(str(png_root / "train"), train_transforms())
    return DeviceDataLoader(loader(train_ds, batch_size), device)


def channels(c: int, width: float) -> int:
    """Channels of a layer with ``c`` in the tutorial's model: the job's MODEL_WIDTH rule."""
    return max(1, round(c * width))


def accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correct predictions in one batch (the tutorial's helper)."""
    _, preds = torch.max(outputs, dim=1)
    return torch.tensor(torch.sum(preds == labels).item() / len(preds))


class ImageClassificationBase(nn.Module):
    """The tutorial's training/validation steps and epoch summaries."""

    def training_step(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        images, labels = batch
        out = self(images)
        return F.cross_entropy(out, labels)

    def validation_step(self, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch
        out = self(images)
        loss = F.cross_entropy(out, labels)
        acc = accuracy(out, labels)
        return {"val_loss": loss.detach(), "val_acc": acc}

    def validation_epoch_end(self, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        # As in the tutorial: the mean of per-batch losses and accuracies.
        epoch_loss = torch.stack([x["val_loss"] for x in outputs]).mean()
        epoch_acc = torch.stack([x["val_acc"] for x in outputs]).mean()
        return {"val_loss": epoch_loss.item(), "val_acc": epoch_acc.item()}

    def epoch_end(self, epoch: int, result: dict[str, Any]) -> None:
        print(
            f"Epoch [{epoch}], last_lr: {result['lrs'][-1]:.5f}, "
            f"train_loss: {result['train_loss']:.4f}, val_loss: {result['val_loss']:.4f}, "
            f"val_acc: {result['val_acc']:.4f}",
            flush=True,
        )


def conv_block(in_channels: int, out_channels: int, pool: bool = False) -> nn.Sequential:
    """3×3 conv (padding 1) + BatchNorm + ReLU, optionally followed by 2×2 max-pooling."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(ImageClassificationBase):
    """The tutorial's ResNet9 (6,575,370 parameters at width 1), channels scaled by ``width``."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> None:
        super().__init__()
        c64, c128, c256, c512 = (channels(c, width) for c in (64, 128, 256, 512))
        self.conv1 = conv_block(in_channels, c64)
        self.conv2 = conv_block(c64, c128, pool=True)
        self.res1 = nn.Sequential(conv_block(c128, c128), conv_block(c128, c128))
        self.conv3 = conv_block(c128, c256, pool=True)
        self.conv4 = conv_block(c256, c512, pool=True)
        self.res2 = nn.Sequential(conv_block(c512, c512), conv_block(c512, c512))
        self.classifier = nn.Sequential(
            nn.MaxPool2d(4), nn.Flatten(), nn.Dropout(0.2), nn.Linear(c512, num_classes)
        )

    def forward(self, xb: torch.Tensor) -> torch.Tensor:
        out = self.conv1(xb)
        out = self.conv2(out)
        out = self.res1(out) + out
        out = self.conv3(out)
        out = self.conv4(out)
        out = self.res2(out) + out
        return self.classifier(out)


@torch.no_grad()
def evaluate(model: ImageClassificationBase, val_loader: Any) -> dict[str, float]:
    """Validation loss and accuracy over ``val_loader`` in eval mode (the tutorial's)."""
    model.eval()
    outputs = [model.validation_step(batch) for batch in val_loader]
    return model.validation_epoch_end(outputs)


def fit_one_cycle(
    epochs: int,
    max_lr: float,
    model: ImageClassificationBase,
    train_loader: Any,
    val_loader: Any,
    weight_decay: float = 0,
    grad_clip: float | None = None,
    # Any optimizer class taking (params, lr, weight_decay=…), as the tutorial passes Adam.
    opt_func: Callable[..., torch.optim.Optimizer] = torch.optim.SGD,
) -> list[dict[str, Any]]:
    """The tutorial's training loop: one-cycle LR stepped per batch, value clipping."""
    torch.cuda.empty_cache()
    history = []
    optimizer = opt_func(model.parameters(), max_lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr, epochs=epochs, steps_per_epoch=len(train_loader)
    )
    for epoch in range(epochs):
        model.train()
        train_losses = []
        lrs = []
        for batch in train_loader:
            loss = model.training_step(batch)
            train_losses.append(loss)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_value_(model.parameters(), grad_clip)
            optimizer.step()
            optimizer.zero_grad()
            lrs.append(optimizer.param_groups[0]["lr"])
            sched.step()
        result: dict[str, Any] = evaluate(model, val_loader)
        result["train_loss"] = torch.stack(train_losses).mean().item()
        result["lrs"] = lrs
        model.epoch_end(epoch, result)
        history.append(result)
    return history


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The tutorial end to end: extract, datasets, loaders, model, evaluate, fit, evaluate."""
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    device = torch.device(args.device) if args.device else get_default_device()
    # A repeat run (--reuse-extracted) skips only the extraction; ImageFolder still scans
    # the folder and every batch still reads and decodes its PNGs, as in the tutorial.
    data_dir, reused = extracted(args.archive, args.data_dir, args.reuse_extracted)
    t_extract = time.perf_counter()
    train_ds, valid_ds = datasets(data_dir, args.train_limit, args.test_limit, args.seed)
    train_dl = DeviceDataLoader(loader(train_ds, args.batch_size, args.num_workers), device)
    valid_dl = DeviceDataLoader(loader(valid_ds, args.batch_size, args.num_workers, False), device)
    model = to_device(ResNet9(3, 10, args.width), device)
    t_setup = time.perf_counter()
    history = [evaluate(model, valid_dl)]
    history += fit_one_cycle(
        args.epochs, MAX_LR, model, train_dl, valid_dl,
        grad_clip=GRAD_CLIP, weight_decay=WEIGHT_DECAY, opt_func=torch.optim.Adam,
    )  # fmt: skip
    t_end = time.perf_counter()
    return {
        "val_acc": history[-1]["val_acc"],
        "val_loss": history[-1]["val_loss"],
        "history": history,
        "train_images": len(train_ds),  # type: ignore[arg-type]
        "test_images": len(valid_ds),  # type: ignore[arg-type]
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "reused_extraction": reused,
        "extract_seconds": t_extract - t0,
        "setup_seconds": t_setup - t_extract,
        "fit_seconds": t_end - t_setup,
        "total_seconds": t_end - t0,
    }


def _parser() -> argparse.ArgumentParser:
    about = "The Jovian 05b CIFAR-10 ResNet9 tutorial pipeline (benchmark baseline)."
    p = argparse.ArgumentParser(prog="python -m bench.tutorial", description=about)
    p.add_argument("--archive", type=Path, required=True, help="fast.ai-layout cifar10.tgz")
    p.add_argument("--data-dir", type=Path, required=True, help="folder to extract into")
    reuse = "skip extraction when --data-dir holds a completed extraction of --archive"
    p.add_argument("--reuse-extracted", action="store_true", help=reuse)
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (MODEL_WIDTH)")
    p.add_argument("--train-limit", type=int, default=0, help="seeded subset size; 0 = all")
    p.add_argument("--test-limit", type=int, default=0, help="seeded subset size; 0 = all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=NUM_WORKERS)
    p.add_argument("--device", default="", help="default: cuda if available, else cpu")
    p.add_argument("--result", type=Path, help="write the run's figures here as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    result = run(args)
    if args.result:
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
