"""Everything a finished run leaves in OUTPUT_DIR: JSON, CSV and the tutorial's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display in containers
import matplotlib.pyplot as plt
import pandas as pd
import torch

from job.checkpoint import atomic_write, write_json
from job.loader import MEAN, STD


def history_frame(history: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per history entry; the per-batch ``lrs`` become first/last columns."""
    rows = []
    for entry in history:
        row = {k: v for k, v in entry.items() if k != "lrs"}
        if entry.get("lrs"):
            row["lr_first"], row["lr_last"] = entry["lrs"][0], entry["lrs"][-1]
        rows.append(row)
    return pd.DataFrame(rows)


def write_history(output_dir: Path, history: list[dict[str, Any]]) -> None:
    """history.json (the tutorial's list of dicts) and history.csv."""
    write_json(output_dir / "history.json", history)
    csv = history_frame(history).to_csv(index=False)
    atomic_write(output_dir / "history.csv", lambda f: f.write(csv.encode()))


def _save(fig: plt.Figure, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)


def plot_history(output_dir: Path, history: list[dict[str, Any]]) -> None:
    """accuracy.png, losses.png and lrs.png, as in the tutorial."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["val_acc"] for h in history], "-x", label="validation")
    ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy vs. No. of epochs")
    ax.legend()
    _save(fig, output_dir / "accuracy.png")

    trained = [h for h in history if "train_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [h["epoch"] for h in trained], [h["train_loss"] for h in trained], "-bx", label="training"
    )
    ax.plot(epochs, [h["val_loss"] for h in history], "-rx", label="validation")
    ax.set(xlabel="epoch", ylabel="loss", title="Loss vs. No. of epochs")
    ax.legend()
    _save(fig, output_dir / "losses.png")

    lrs = [lr for h in trained for lr in h["lrs"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(lrs)), lrs, label="one-cycle schedule")
    ax.set(xlabel="batch no.", ylabel="learning rate", title="Learning Rate vs. Batch no.")
    ax.legend()
    _save(fig, output_dir / "lrs.png")


def plot_samples(
    output_dir: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: tuple[str, ...],
    n: int = 32,
) -> None:
    """samples.png: a grid of augmented, de-normalised training images with their classes."""
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    n = min(n, len(images))
    cols = 8
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            img = (images[i].detach().float().cpu() * std + mean).clamp(0, 1)
            ax.imshow(img.permute(1, 2, 0).numpy())
            ax.set_title(classes[int(labels[i])], fontsize=7)
    fig.suptitle("Training samples (augmented, de-normalised)")
    _save(fig, output_dir / "samples.png")
