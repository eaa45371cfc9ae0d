"""The tutorial re-implementation: same model as the job's, the tutorial's history shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bench import tutorial
from job.model import ResNet9 as JobResNet9


def _params(model: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in model.parameters()]


def test_full_width_is_the_tutorials_resnet9() -> None:
    model = tutorial.ResNet9(3, 10)
    assert sum(p.numel() for p in model.parameters()) == 6_575_370


@pytest.mark.parametrize("width", [1.0, 0.25, 0.125, 0.3])
def test_width_rule_builds_the_jobs_network(width: float) -> None:
    assert _params(tutorial.ResNet9(3, 10, width)) == _params(JobResNet9(10, width))


def test_subset_is_seeded_and_sized() -> None:
    # A list is a map-style data set for Subset's purposes (len and indexing).
    data: Any = list(range(100))
    first: Any = tutorial.subset(data, 10, seed=3)
    again: Any = tutorial.subset(data, 10, seed=3)
    assert [first[i] for i in range(10)] == [again[i] for i in range(10)]
    assert len(first) == 10
    assert len({first[i] for i in range(10)}) == 10
    assert tutorial.subset(data, 0, seed=3) is data


@pytest.mark.slow
def test_script_records_the_tutorials_history(archives: dict[str, Path], tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    argv = ["--archive", str(archives["fastai"]), "--data-dir", str(tmp_path / "data")]
    argv += ["--epochs", "2", "--batch-size", "64", "--width", "0.125", "--train-limit", "200"]
    argv += ["--num-workers", "0", "--result", str(result)]
    assert tutorial.main(argv) == 0
    out = json.loads(result.read_text())
    history = out["history"]
    assert len(history) == 3  # evaluation before training, then one entry per epoch
    assert "train_loss" not in history[0]
    assert all(len(h["lrs"]) == 4 for h in history[1:])  # 200 images / 64 = 4 batches
    assert history[1]["lrs"][0] < history[1]["lrs"][-1]  # one-cycle: warming up
    assert history[2]["lrs"][-1] < 1e-4  # … and annealed to near zero
    assert out["train_images"] == 200
    assert out["test_images"] == 200
