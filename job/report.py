"""Everything a finished run leaves in OUTPUT_DIR: JSON, CSV and the tutorial's plots.

matplotlib and pandas load on first use, not on import, so a run that fails before its
outputs never pays for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from job.contract import (
    ACCURACY_PNG,
    HISTORY_CSV,
    HISTORY_JSON,
    LOSSES_PNG,
    LRS_PNG,
    SAMPLES_PNG,
)
from job.files import atomic_write, write_json
from job.loader import DeviceLoader
from job.preprocess import CIFAR10, Preprocess
from job.records import EpochRecord, TrainedEpoch

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from job.data import Dataset

SAMPLES = 32  # images in samples.png
_COLS = 8  # samples.png grid columns
_LABEL = 10  # px: the band above each sample that holds its class
_GAP = 2  # px between samples


def trained_epochs(history: Sequence[EpochRecord]) -> list[TrainedEpoch]:
    """The history's trained epochs: every record but the evaluation before training."""
    return [h for h in history if isinstance(h, TrainedEpoch)]


def history_frame(history: Sequence[EpochRecord]) -> pd.DataFrame:
    """One row per history entry; the per-batch ``lrs`` become first/last columns."""
    import pandas as pd

    rows = []
    for entry in history:
        row = {k: v for k, v in entry.to_json().items() if k != "lrs"}
        if isinstance(entry, TrainedEpoch) and entry.lrs:
            row["lr_first"], row["lr_last"] = entry.lrs[0], entry.lrs[-1]
        rows.append(row)
    return pd.DataFrame(rows)


def write_history(output_dir: Path, history: Sequence[EpochRecord]) -> None:
    """history.json (the tutorial's list of dicts, see :class:`job.records.TrainedEpoch`)
    and history.csv."""
    write_json(output_dir / HISTORY_JSON, [entry.to_json() for entry in history])
    csv = history_frame(history).to_csv(index=False)
    atomic_write(output_dir / HISTORY_CSV, lambda f: f.write(csv.encode()))


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6, 4)) -> tuple[Figure, Any]:
    # A Figure without pyplot: no global state, no backend selection, safe off the main thread.
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    # Room for the tick labels, axis labels and title of a 6 × 4 in plot, no more.
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Figure, path: Path) -> None:
    # Figures are laid out by hand: bbox_inches="tight" would cost a second draw.
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def _integer_epochs(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers


def history_figures(history: Sequence[EpochRecord]) -> dict[str, Figure]:
    """The tutorial's three plots of ``history``, keyed by their file names.

    The epoch plots have whole-number ticks; the learning-rate plot marks where each epoch ends.
    """
    epochs = [h.epoch for h in history]
    trained = trained_epochs(history)

    accuracy, axes = _figure()
    ax = axes[0, 0]
    ax.plot(epochs, [h.val_acc for h in history], "-x", label="validation")
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy vs. No. of epochs")
    _integer_epochs(ax)
    ax.legend()

    losses, axes = _figure()
    ax = axes[0, 0]
    ax.plot([h.epoch for h in trained], [h.train_loss for h in trained], "-bx", label="training")
    ax.plot(epochs, [h.val_loss for h in history], "-rx", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss vs. No. of epochs")
    _integer_epochs(ax)
    ax.legend()

    lrs_fig, axes = _figure()
    ax = axes[0, 0]
    lrs = [lr for h in trained for lr in h.lrs]
    ax.plot(range(len(lrs)), lrs, label="one-cycle schedule")
    for i, end in enumerate(epoch_ends(trained)[:-1]):
        # Between the epoch's last batch and the next one's first.
        ax.axvline(
            end - 0.5,
            color="grey",
            linestyle=":",
            linewidth=0.8,
            label="epoch boundary" if i == 0 else None,
        )
    ax.set(xlabel="batch no.", ylabel="learning rate", title="Learning Rate vs. Batch no.")
    ax.legend()
    return {ACCURACY_PNG: accuracy, LOSSES_PNG: losses, LRS_PNG: lrs_fig}


def plot_history(output_dir: Path, history: Sequence[EpochRecord]) -> None:
    """accuracy.png, losses.png and lrs.png, as in the tutorial (see :func:`history_figures`)."""
    for name, fig in history_figures(history).items():
        _save(fig, output_dir / name)


def start_history_plots(output_dir: Path, history: Sequence[EpochRecord]) -> Future[None]:
    """Draw :func:`plot_history` on a thread of its own, so it overlaps writing the model's
    files at the end of a run; the returned future re-raises what the drawing raised."""
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resnet-job-plots")
    drawn = background.submit(plot_history, output_dir, history)
    background.shutdown(wait=False)
    return drawn


def epoch_ends(trained: Sequence[TrainedEpoch]) -> list[int]:
    """The batch number after each epoch's last batch (cumulative lengths of ``lrs``)."""
    ends, total = [], 0
    for entry in trained:
        total += len(entry.lrs)
        ends.append(total)
    return ends


def sample_indices(n: int, seed: int, k: int = SAMPLES) -> torch.Tensor:
    """``k`` distinct indices into ``n`` training images, drawn from ``seed``.

    The training set may be sorted by class (the fast.ai layout is), so the first images would
    all be airplanes; random ones show the mix of classes the model sees.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[: min(k, n)]


def samples_figure(
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    n: int = SAMPLES,
    preprocess: Preprocess = CIFAR10,
) -> Figure:
    """A grid of augmented training images, de-normalised with the ``preprocess`` they were
    normalised with, each labelled with its class.

    The grid is one image in one Axes (a white band above each tile holds its label): 32
    separate Axes would cost 32 layouts and draws.
    """
    mean = torch.tensor(preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std).view(1, 3, 1, 1)
    n = min(n, len(images))
    pixels = (images[:n].detach().float().cpu() * std + mean).clamp(0, 1).permute(0, 2, 3, 1)
    rows = max(1, -(-n // _COLS))
    size = pixels.shape[1]  # px: IMAGE_SIZE
    cell_w, cell_h = size + _GAP, size + _LABEL + _GAP
    grid = torch.ones(rows * cell_h, _COLS * cell_w, 3)
    width = _COLS * 1.2  # inches
    # The grid's own aspect, plus 8% for the title: no empty margins to crop.
    fig, axes = _figure(1, 1, (width, width * grid.shape[0] / grid.shape[1] / 0.92))
    ax = axes[0, 0]
    for i in range(n):
        top, left = (i // _COLS) * cell_h + _LABEL, (i % _COLS) * cell_w
        grid[top : top + size, left : left + size] = pixels[i]
        ax.text(
            left + size / 2, top - 1, classes[int(labels[i])], ha="center", va="bottom", fontsize=7
        )
    ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_axis_off()
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.92)
    fig.suptitle("Training samples (augmented, de-normalised)")
    return fig


def plot_samples(
    output_dir: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    n: int = SAMPLES,
    preprocess: Preprocess = CIFAR10,
) -> None:
    """samples.png: see :func:`samples_figure`."""
    _save(samples_figure(images, labels, classes, n, preprocess), output_dir / SAMPLES_PNG)


def start_samples(output_dir: Path, data: Dataset, seed: int) -> Future[None]:
    """Draw samples.png from ``seed``'s :func:`sample_indices` on a thread of its own.

    The drawing (matplotlib's import and the figure, a noticeable share of a short run's
    fixed cost: docs/benchmarks.md) overlaps the training. The run waits for the returned
    future, which re-raises what the drawing raised, before it reports done, so every output
    exists when it exits 0.
    """
    picked = sample_indices(len(data.train_labels), seed)
    sample = DeviceLoader(
        data.train_images[picked],
        data.train_labels[picked],
        len(picked),
        train=True,
        seed=seed,
        preprocess=data.preprocess,
    )
    images, labels = (t.cpu() for t in next(iter(sample.epoch())))
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resnet-job-plots")
    drawn = background.submit(
        _draw_samples, output_dir, images, labels, data.classes, data.preprocess
    )
    background.shutdown(wait=False)
    return drawn


def _draw_samples(
    output_dir: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    preprocess: Preprocess,
) -> None:
    plot_samples(output_dir, images, labels, classes, preprocess=preprocess)
    # Warm what the end of the run imports (history.csv, the epoch plots' ticks) meanwhile.
    import matplotlib.ticker  # noqa: F401
    import pandas  # noqa: F401
