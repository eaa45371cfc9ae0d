"""Checkpoint and resume on CUDA: a run stopped after epoch 1 resumes where it stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from job.checkpoint import load_checkpoint
from job.config import Config, from_env
from job.data import load_dataset
from job.errors import StoppedError
from job.plan import RunPlan
from job.records import TrainedEpoch
from job.train import FitResult, fit

pytestmark = pytest.mark.gpu


def _config(archive: Path, root: Path, name: str) -> Config:
    return from_env(
        {
            "DATA_URL": archive.as_uri(),
            "DATA_DIR": str(root / "data"),
            "OUTPUT_DIR": str(root / name),
            "DEVICE": "cuda",
            "EPOCHS": "3",
            "BATCH_SIZE": "64",
            "MODEL_WIDTH": "0.25",
        }
    )


def _fit(cfg: Config, device: torch.device, stop_after: int | None = None) -> FitResult:
    def on_epoch(entry: TrainedEpoch) -> None:
        # fit writes the epoch's checkpoint before calling this: the state SIGTERM leaves.
        if entry.epoch == stop_after:
            raise StoppedError(f"stopped after epoch {stop_after}")

    return fit(RunPlan(cfg, device, "bf16", 1, started=0.0), load_dataset(cfg), on_epoch)


@pytest.fixture
def runs(cuda, archives: dict[str, Path], tmp_path: Path) -> dict[str, Any]:
    """An uninterrupted run, and a run stopped after epoch 1 then resumed."""
    whole = _fit(_config(archives["fastai"], tmp_path, "whole"), cuda)
    cfg = _config(archives["fastai"], tmp_path, "resumed")
    with pytest.raises(StoppedError):
        _fit(cfg, cuda, stop_after=1)
    saved = load_checkpoint(cfg.output_dir, cfg.fingerprint())
    resumed = _fit(cfg, cuda)
    return {"whole": whole, "saved": saved, "resumed": resumed}


def test_checkpoint_holds_epoch_1_with_cuda_rng_state(runs: dict[str, Any]) -> None:
    saved = runs["saved"]
    assert saved is not None
    assert saved["epoch"] == 1
    assert saved["rng_cuda"] is not None


def test_resume_starts_after_the_checkpointed_epoch(runs: dict[str, Any]) -> None:
    resumed = runs["resumed"]
    assert resumed.resumed_from == 1
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[1] == runs["saved"]["history"][1]


def test_resumed_schedule_matches_an_uninterrupted_run(runs: dict[str, Any]) -> None:
    whole, resumed = runs["whole"].history, runs["resumed"].history
    assert [h.get("lrs") for h in resumed] == [h.get("lrs") for h in whole]


def test_resumed_losses_match_an_uninterrupted_run(runs: dict[str, Any]) -> None:
    # cuDNN kernels are not bitwise deterministic (cudnn.benchmark, atomics in backward), so
    # the losses agree closely rather than exactly; a lost optimizer state would not.
    whole, resumed = runs["whole"].history, runs["resumed"].history
    for a, b in zip(whole[2:], resumed[2:], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05)
