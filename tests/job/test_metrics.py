"""metrics.json's contents from a run's records (job/metrics.py)."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from job.code import PACKAGE, code_sha256
from job.config import Config
from job.data import Dataset
from job.metrics import run_metrics
from job.model import legacy_info
from job.plan import RunPlan
from job.records import Evaluation, TrainedEpoch
from job.train import FitResult

KEYS = [
    "val_acc",
    "val_loss",
    "train_loss",
    "best_val_acc",
    "best_epoch",
    "epochs",
    "resumed_from",
    "seed",
    "train_seconds",
    "images_per_sec",
    "wall_seconds",
    "n_train",
    "n_test",
    "parameters",
    "device",
    "device_name",
    "precision",
    "precision_reason",
    "cpu_threads",
    "torch_version",
    "cuda_version",
    "data_sha256",
    "data_layout",
    "code_sha256",
    "compiled_graphs",
]


def _data(n_train: int = 100, n_test: int = 40) -> Dataset:
    return Dataset(
        train_images=torch.zeros(n_train, 3, 32, 32, dtype=torch.uint8),
        train_labels=torch.zeros(n_train, dtype=torch.long),
        test_images=torch.zeros(n_test, 3, 32, 32, dtype=torch.uint8),
        test_labels=torch.zeros(n_test, dtype=torch.long),
        classes=tuple("abcdefghij"),
        sha256="ab" * 32,
        layout="python",
    )


def _epoch(epoch: int, val_acc: float, train_seconds: float) -> TrainedEpoch:
    return TrainedEpoch(epoch, 1.0 / epoch, 2.0 / epoch, val_acc, (0.01,), train_seconds, 0.5, 1.0)


def _result(
    *trained: TrainedEpoch, resumed_from: int = 0, compiled_graphs: int | None = None
) -> FitResult:
    return FitResult(
        records=[Evaluation(0, 2.3, 0.1, 0.25), *trained],
        model=torch.nn.Linear(4, 3),  # 15 parameters
        resumed_from=resumed_from,
        info=legacy_info(1.0),
        compiled_graphs=compiled_graphs,
    )


def _plan(precision: str, started: float, cpu_threads: int) -> RunPlan:
    reason = f"PRECISION={precision} set"
    return RunPlan(Config(seed=7), torch.device("cpu"), precision, cpu_threads, started, reason)


def test_metrics_have_the_contracts_keys_in_order() -> None:
    metrics = run_metrics(_result(_epoch(1, 0.5, 2.0)), _data(), _plan("fp32", 0.0, 2))
    assert list(metrics) == KEYS


def test_metrics_summarise_the_trained_epochs() -> None:
    result = _result(_epoch(1, 0.5, 2.0), _epoch(2, 0.7, 3.0), _epoch(3, 0.6, 5.0), resumed_from=1)
    started = time.perf_counter()
    metrics = run_metrics(result, _data(), _plan("bf16", started, 3))
    assert metrics["val_acc"] == 0.6 and metrics["val_loss"] == pytest.approx(2.0 / 3)
    assert metrics["train_loss"] == pytest.approx(1.0 / 3)
    assert (metrics["best_val_acc"], metrics["best_epoch"]) == (0.7, 2)
    assert (metrics["epochs"], metrics["resumed_from"], metrics["seed"]) == (3, 1, 7)
    assert metrics["train_seconds"] == 10.0
    assert metrics["images_per_sec"] == 100 * 3 / 10.0
    assert 0 <= metrics["wall_seconds"] < 60
    assert (metrics["n_train"], metrics["n_test"], metrics["parameters"]) == (100, 40, 15)
    assert (metrics["device"], metrics["precision"], metrics["cpu_threads"]) == ("cpu", "bf16", 3)
    assert metrics["precision_reason"] == "PRECISION=bf16 set"
    assert (metrics["data_sha256"], metrics["data_layout"]) == ("ab" * 32, "python")
    assert metrics["compiled_graphs"] is None  # an eager run


def test_a_compiled_run_reports_its_graphs() -> None:
    result = _result(_epoch(1, 0.5, 2.0), compiled_graphs=1)
    assert run_metrics(result, _data(), _plan("fp32", 0.0, 1))["compiled_graphs"] == 1


def test_a_run_with_nothing_trained_reports_its_evaluation() -> None:
    metrics = run_metrics(_result(), _data(), _plan("fp32", time.perf_counter(), 1))
    assert (metrics["val_acc"], metrics["best_epoch"], metrics["epochs"]) == (0.1, 0, 0)
    assert metrics["train_loss"] is None
    assert (metrics["train_seconds"], metrics["images_per_sec"]) == (0, 0.0)


def test_metrics_name_the_code_by_its_digest() -> None:
    metrics = run_metrics(_result(_epoch(1, 0.5, 2.0)), _data(), _plan("fp32", 0.0, 2))
    assert metrics["code_sha256"] == code_sha256(PACKAGE)
    assert len(metrics["code_sha256"]) == 64 and int(metrics["code_sha256"], 16) >= 0


_digest = code_sha256.__wrapped__
"""The digest computed afresh (the job's own is computed once per process)."""


@pytest.mark.parametrize(
    ("change", "same"),
    [
        (lambda job: (job / "metrics.py").write_text("# edited\n"), False),
        (lambda job: (job / "metrics.py").rename(job / "metrics2.py"), False),
        (lambda job: (job / "notes.txt").write_text("not source"), True),
        (lambda job: (job / "__pycache__" / "x.py").write_text("cached"), True),
    ],
    ids=["an edited file", "a renamed file", "a non-source file", "a bytecode cache"],
)
def test_the_code_digest_changes_with_the_source_only(tmp_path, change, same) -> None:
    copy = shutil.copytree(PACKAGE, tmp_path / "job", ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "__pycache__").mkdir()
    assert _digest(copy) == _digest(PACKAGE)
    change(copy)
    assert (_digest(copy) == _digest(PACKAGE)) is same
