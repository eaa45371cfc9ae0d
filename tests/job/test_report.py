"""The tutorial's plots and the history files (job/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from job.contract import (
    HISTORY_CSV,
    HISTORY_JSON,
    PLOTS,
    SAMPLES_PNG,
)
from job.preprocess import CIFAR10, Preprocess
from job.records import EpochRecord, TrainedEpoch, record_from_json
from job.report import (
    epoch_ends,
    history_figures,
    plot_history,
    plot_samples,
    sample_indices,
    samples_figure,
    trained_epochs,
    write_history,
)


def _history(epochs: int, batches: int) -> list[EpochRecord]:
    return [record_from_json(entry) for entry in _entries(epochs, batches)]


def _entries(epochs: int, batches: int) -> list[dict]:
    """A history as history.json holds it."""
    history: list[dict] = [{"epoch": 0, "val_loss": 2.3, "val_acc": 0.1, "eval_seconds": 0.1}]
    for e in range(1, epochs + 1):
        lrs = [0.01 * (e * batches + b) for b in range(batches)]
        history.append(
            {
                "epoch": e,
                "train_loss": 2.0 / e,
                "val_loss": 2.1 / e,
                "val_acc": 0.1 + 0.1 * e,
                "lrs": lrs,
                "train_seconds": 1.0,
                "eval_seconds": 0.1,
                "images_per_sec": 100.0,
            }
        )
    return history


@pytest.mark.parametrize("epochs", [1, 2, 3, 7])
@pytest.mark.parametrize("name", ["accuracy.png", "losses.png"])
def test_epoch_plots_have_whole_number_ticks(epochs: int, name: str) -> None:
    fig = history_figures(_history(epochs, batches=4))[name]
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks)


@pytest.mark.parametrize(("epochs", "batches"), [(1, 5), (2, 5), (4, 3)])
def test_lrs_plot_marks_each_boundary_between_epochs(epochs: int, batches: int) -> None:
    ax = history_figures(_history(epochs, batches))["lrs.png"].axes[0]
    vertical = [line for line in ax.lines if len(set(line.get_xdata())) == 1]
    assert sorted(line.get_xdata()[0] for line in vertical) == [
        e * batches - 0.5 for e in range(1, epochs)
    ]


@pytest.mark.parametrize(("lengths", "ends"), [([5], [5]), ([5, 5, 3], [5, 10, 13]), ([], [])])
def test_epoch_ends_are_cumulative_batch_counts(lengths: list[int], ends: list[int]) -> None:
    trained = [
        TrainedEpoch(e, 1.0, 1.0, 0.5, (0.0,) * n, 1.0, 0.1, 100.0)
        for e, n in enumerate(lengths, 1)
    ]
    assert epoch_ends(trained) == ends


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_sample_indices_are_distinct_and_seeded(seed: int) -> None:
    picked = sample_indices(5000, seed)
    assert len(picked) == len(set(picked.tolist())) == 32
    assert torch.equal(picked, sample_indices(5000, seed))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_samples_from_a_class_sorted_set_mix_classes(seed: int) -> None:
    labels = torch.arange(10).repeat_interleave(500)  # sorted by class, as fast.ai's folders
    assert len(set(labels[sample_indices(len(labels), seed)].tolist())) >= 5


@pytest.mark.parametrize("n", [3, 32])
def test_sample_indices_never_exceed_the_set(n: int) -> None:
    assert sorted(sample_indices(n, 0).tolist()) == list(range(min(n, 32)))


def test_every_plot_is_written_as_a_png(tmp_path: Path) -> None:
    history = _history(2, 3)
    plot_history(tmp_path, history)
    images = torch.zeros(4, 3, 32, 32)
    plot_samples(tmp_path, images, torch.tensor([0, 1, 2, 3]), tuple("abcd"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PLOTS)
    assert {(tmp_path / name).read_bytes()[:4] for name in PLOTS} == {b"\x89PNG"}
    assert (tmp_path / SAMPLES_PNG).stat().st_size > 0


def test_history_files_round_trip(tmp_path: Path) -> None:
    write_history(tmp_path, _history(2, 3))
    assert json.loads((tmp_path / HISTORY_JSON).read_text()) == _entries(2, 3)
    header = (tmp_path / HISTORY_CSV).read_text().splitlines()[0].split(",")
    assert {"epoch", "val_acc", "lr_first", "lr_last"} <= set(header) and "lrs" not in header


def test_history_csv_has_one_row_per_entry_with_the_first_and_last_lr(tmp_path: Path) -> None:
    import pandas as pd

    write_history(tmp_path, _history(2, 3))
    frame = pd.read_csv(tmp_path / HISTORY_CSV)
    assert list(frame["epoch"]) == [0, 1, 2]
    assert frame["train_loss"].isna().tolist() == [True, False, False]  # entry 0 trained nothing
    assert list(frame["lr_first"][1:]) == pytest.approx([0.03, 0.06])
    assert list(frame["lr_last"][1:]) == pytest.approx([0.05, 0.08])


def test_trained_epochs_are_every_entry_but_the_evaluation_before_training() -> None:
    assert [h.epoch for h in trained_epochs(_history(3, 2))] == [1, 2, 3]


@pytest.mark.parametrize("n", [1, 8, 13, 32])
def test_each_sample_is_labelled_with_its_class(n: int) -> None:
    classes = tuple(f"class{i}" for i in range(10))
    labels = torch.arange(n) % 10
    fig = samples_figure(torch.zeros(n, 3, 32, 32), labels, classes)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == [classes[int(label)] for label in labels]
    assert ax.images[0].get_array().shape[1] == 8 * 34  # eight columns of 32 px and a gap


@pytest.mark.parametrize(
    "preprocess",
    [
        CIFAR10,
        Preprocess(64, (0.61, 0.52, 0.40), (0.27, 0.22, 0.31)),
        Preprocess(96, CIFAR10.mean, (0.5, 0.5, 0.5)),
    ],
    ids=["cifar-32", "own-64", "own-96"],
)
def test_samples_are_de_normalised_with_the_datas_own_statistics(preprocess: Preprocess) -> None:
    size = preprocess.size
    gen = torch.Generator().manual_seed(size)
    pixels = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8, generator=gen)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (preprocess.mean, preprocess.std))
    normalised = (pixels.float() / 255 - mean) / std  # as the loader hands them to the model
    fig = samples_figure(normalised, torch.tensor([0, 1]), ("a", "b"), preprocess=preprocess)
    grid = fig.axes[0].images[0].get_array()
    first = grid[10 : 10 + size, :size]  # the first tile, below its 10 px label band
    expected = pixels[0].permute(1, 2, 0).float().numpy() / 255
    assert abs(first - expected).max() < 1e-5
