"""The training loop (job/train.py): its optimizer, the records it produces, resume."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from job.checkpoint import load_checkpoint
from job.config import Config, from_env
from job.data import CIFAR_CLASSES, load_dataset
from job.errors import ConfigError, StoppedError
from job.plan import RunPlan
from job.preprocess import CIFAR10
from job.records import EpochRecord, Evaluation, TrainedEpoch
from job.train import FitResult, fit, optimizer_class
from tests.conftest import REPO, job_env
from tests.job.pictures import cifar_pictures, regroup, write_folder


def _train(opt_cls: type[torch.optim.Optimizer], steps: int = 5) -> tuple[dict, dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = opt_cls(model.parameters(), lr=0.01, weight_decay=1e-4)
    data, target = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(steps):
        torch.nn.functional.cross_entropy(model(data), target).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.state_dict(), opt.state_dict()


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(("name", "stock"), [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_eager_optimizer_computes_what_torchs_does(name: str, stock: type) -> None:
    assert _equal(_train(optimizer_class(name, compiled=False)), _train(stock))


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_eager_optimizer_state_loads_into_torchs(name: str) -> None:
    _, state = _train(optimizer_class(name, compiled=False))
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    stock = torch.optim.Adam if name == "adam" else torch.optim.SGD
    opt = stock(model.parameters(), lr=0.01, weight_decay=1e-4)
    opt.load_state_dict(state)
    assert _equal(opt.state_dict(), state)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_compiled_runs_keep_torchs_optimizer(name: str) -> None:
    assert optimizer_class(name, compiled=True) in (torch.optim.Adam, torch.optim.SGD)


_NO_DYNAMO = """
import sys
import torch
from job.train import optimizer_class
COMPILED = False
model = torch.nn.Linear(4, 2)
opt = optimizer_class("adam", compiled=COMPILED)(model.parameters(), lr=0.1)
model(torch.randn(3, 4)).sum().backward()
opt.step()
opt.zero_grad()
opt.load_state_dict(opt.state_dict())
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
"""


def test_an_eager_optimizer_never_imports_dynamo() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_DYNAMO], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


# -- fit: records out, plain dicts in the checkpoint, resume --------------------------------

_TIMINGS = {"train_seconds", "eval_seconds", "images_per_sec"}


def _config(archive: Path, root: Path, **settings: object) -> Config:
    """job_env's quick CPU run (2 epochs, width 0.125) in fp32, with DATA_DIR in ``root``."""
    return from_env(job_env(root, DATA_URL=archive.as_uri(), PRECISION="fp32", SEED=5, **settings))


def _fit(cfg: Config, stop_after: int | None = None) -> tuple[FitResult, list[TrainedEpoch]]:
    reported: list[TrainedEpoch] = []

    def on_epoch(record: TrainedEpoch) -> None:
        reported.append(record)
        if record.epoch == stop_after:  # after the epoch's checkpoint, as SIGTERM would
            raise StoppedError(f"stopped after epoch {stop_after}")

    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    plan = RunPlan(cfg, torch.device("cpu"), "fp32", 1, started=time.perf_counter())
    return fit(plan, load_dataset(cfg), on_epoch), reported


def _untimed(records: list[EpochRecord]) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k not in _TIMINGS} for r in records]


@pytest.fixture(scope="module")
def fits(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted fit, and one stopped after epoch 1 (its checkpoint) then resumed."""
    root = tmp_path_factory.mktemp("fit")
    whole, reported = _fit(_config(archives["python"], root / "whole"))
    cfg = _config(archives["python"], root / "resumed")
    with pytest.raises(StoppedError):
        _fit(cfg, stop_after=1)
    saved = load_checkpoint(cfg.output_dir, cfg.fingerprint())
    resumed, _ = _fit(cfg)
    streamed, _ = _fit(_config(archives["python"], root / "streamed", STREAM_DATA=1))
    return {
        "whole": whole,
        "reported": reported,
        "saved": saved,
        "resumed": resumed,
        "streamed": streamed,
    }


def test_fit_produces_an_evaluation_then_one_trained_epoch_each(fits: dict) -> None:
    records = fits["whole"].records
    assert [type(r) for r in records] == [Evaluation, TrainedEpoch, TrainedEpoch]
    assert [r.epoch for r in records] == [0, 1, 2]
    assert fits["reported"] == records[1:]  # on_epoch gets each trained epoch's record
    assert all(len(r.lrs) == 7 for r in records[1:])  # ceil(400 / 64) batches


def test_the_checkpoint_history_holds_the_records_as_plain_dicts(fits: dict) -> None:
    saved = fits["saved"]
    assert saved["epoch"] == 1
    assert all(type(entry) is dict for entry in saved["history"])
    assert saved["history"] == [r.to_json() for r in fits["resumed"].records[:2]]
    assert fits["resumed"].history == [r.to_json() for r in fits["resumed"].records]


def test_a_resumed_fit_ends_with_the_uninterrupted_history(fits: dict) -> None:
    assert fits["resumed"].resumed_from == 1
    assert _untimed(fits["resumed"].records) == _untimed(fits["whole"].records)


def test_a_streamed_fit_trains_the_model_a_resident_fit_trains(fits: dict) -> None:
    # The same batches read from the cache's memory map instead of a copy on the device.
    assert _untimed(fits["streamed"].records) == _untimed(fits["whole"].records)


def test_the_result_and_the_checkpoint_carry_the_model_info(fits: dict) -> None:
    info = fits["whole"].info
    # CIFAR-10 keeps the tutorial's constants exactly: its batches are the ones before IMAGE_SIZE.
    assert (info.classes, info.preprocess, info.width) == (CIFAR_CLASSES, CIFAR10, 0.125)
    assert fits["saved"]["model_info"] == info.to_json()


@pytest.mark.realdata
def test_resuming_on_data_of_other_classes_is_refused(
    archives: dict[str, Path], real_cifar: Path, tmp_path: Path
) -> None:
    stopped = _config(archives["python"], tmp_path)
    with pytest.raises(StoppedError):
        _fit(stopped, stop_after=1)
    pictures = write_folder(
        tmp_path / "pictures", regroup(cifar_pictures(real_cifar, 8), 2), size=32
    )
    other = _config(pictures, tmp_path)  # the same OUTPUT_DIR and settings, other data
    with pytest.raises(ConfigError, match=r"10 classes \(airplane, .*\) → 2 classes"):
        _fit(other)


@pytest.mark.realdata
@pytest.mark.parametrize(("size", "classes"), [(64, 2), (96, 37)])
def test_fit_trains_at_the_datas_size_and_classes(
    real_cifar: Path, tmp_path: Path, size: int, classes: int
) -> None:
    groups = regroup(cifar_pictures(real_cifar, 16), classes)
    pictures = write_folder(tmp_path / "pictures", groups, size=size)
    cfg = _config(pictures, tmp_path, IMAGE_SIZE=size, EPOCHS=1, BATCH_SIZE=16)
    result, _ = _fit(cfg)
    assert result.info.classes == tuple(sorted(groups))
    assert result.info.preprocess == load_dataset(cfg).preprocess  # the data's own statistics
    assert result.info.preprocess.size == size
    batch = torch.zeros(2, 3, size, size).contiguous(memory_format=torch.channels_last)
    assert result.model.eval()(batch).shape == (2, classes)


# -- LABEL_SMOOTHING ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoothed(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same seeded fit without LABEL_SMOOTHING, with it set to its default, and at 0.2."""
    root = tmp_path_factory.mktemp("smoothing")
    runs = {}
    settings: dict[str, dict[str, str]] = {
        "unset": {},
        "zero": {"LABEL_SMOOTHING": "0"},
        "0.2": {"LABEL_SMOOTHING": "0.2"},
    }
    for name, env in settings.items():
        cfg = from_env(
            job_env(root / name, DATA_URL=archives["python"].as_uri(), PRECISION="fp32", **env)
        )
        runs[name] = _fit(cfg)[0].records
    return runs


def test_label_smoothing_0_is_the_tutorials_plain_cross_entropy(smoothed: dict) -> None:
    assert _untimed(smoothed["zero"]) == _untimed(smoothed["unset"])


def test_label_smoothing_changes_the_training_loss_not_the_untrained_val_loss(
    smoothed: dict,
) -> None:
    plain, smooth = smoothed["unset"], smoothed["0.2"]
    assert _untimed(smooth[:1]) == _untimed(plain[:1])  # the same model before training
    assert smooth[1].train_loss != plain[1].train_loss
