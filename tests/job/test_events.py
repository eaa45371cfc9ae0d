"""Events on stdout match the contract's TypedDicts exactly (job/events.py)."""

from __future__ import annotations

import json

import pytest

from job.contract import EVENT_VERSION, EVENTS
from job.events import EpochReporter, emit, report_done
from job.records import TrainedEpoch


def _fields(name: str) -> dict[str, object]:
    return {k: 1 for k in EVENTS[name].__required_keys__ - {"v", "event"}}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_an_event_with_its_contract_fields_is_one_json_line(capsys, name: str) -> None:
    emit(name, **_fields(name))
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record == {"v": EVENT_VERSION, "event": name, **_fields(name)}


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_a_missing_field_is_refused(capsys, name: str) -> None:
    fields = _fields(name)
    fields.pop(sorted(fields)[0])
    with pytest.raises(TypeError, match="missing"):
        emit(name, **fields)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_a_field_outside_the_contract_is_refused(capsys, name: str) -> None:
    with pytest.raises(TypeError, match="unexpected"):
        emit(name, **_fields(name), surprise=1)
    assert capsys.readouterr().out == ""


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown event"):
        emit("heartbeat", epoch=1)


def test_the_optional_reason_is_allowed_on_error(capsys) -> None:
    emit("error", code=5, message="Out of disk.", reason="disk")
    assert json.loads(capsys.readouterr().out)["reason"] == "disk"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_become_null(capsys, value: float) -> None:
    emit("epoch", **{**_fields("epoch"), "train_loss": value})
    assert json.loads(capsys.readouterr().out)["train_loss"] is None


def _trained(epoch: int, seconds: float = 1.5) -> TrainedEpoch:
    return TrainedEpoch(
        epoch=epoch,
        train_loss=1.25,
        val_loss=1.5,
        val_acc=0.625,
        lrs=(0.001, 0.004),
        train_seconds=seconds,
        eval_seconds=0.5,
        images_per_sec=3200.0,
    )


def test_the_epoch_reporter_emits_the_epoch_event_from_the_record(capsys) -> None:
    EpochReporter(epochs=4)(_trained(1))
    out = capsys.readouterr().out
    assert json.loads(out) == {
        "v": EVENT_VERSION,
        "event": "epoch",
        "epoch": 1,
        "epochs": 4,
        "train_loss": 1.25,
        "val_loss": 1.5,
        "val_acc": 0.625,
        "lr": 0.004,  # the epoch's last
        "seconds": 2.0,  # training plus evaluation
        "images_per_sec": 3200.0,
    }


def test_the_epoch_reporters_eta_is_the_epochs_left_times_their_mean(capsys) -> None:
    report = EpochReporter(epochs=10)
    report(_trained(1, seconds=9.5))  # 10 s an epoch: 9 left
    report(_trained(2, seconds=29.5))  # a mean of 20 s: 8 left
    first, second = capsys.readouterr().err.splitlines()
    assert first == (
        "epoch 1/10  train_loss 1.2500  val_loss 1.5000  val_acc 0.6250  3200 img/s  ETA 0:01:30"
    )
    assert second.startswith("epoch 2/10  ") and second.endswith("ETA 0:02:40")


def test_done_reports_the_metrics(capsys) -> None:
    metrics = {
        "val_acc": 0.75,
        "best_val_acc": 0.8,
        "epochs": 3,
        "train_seconds": 12.0,
        "images_per_sec": 250.0,
        "wall_seconds": 20.04,
        "n_train": 1000,
        "data_sha256": "ab" * 32,
        "code_sha256": "cd" * 32,
    }
    report_done(metrics, "/output")
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {
        "v": EVENT_VERSION,
        "event": "done",
        "val_acc": 0.75,
        "best_val_acc": 0.8,
        "epochs": 3,
        "train_seconds": 12.0,
        "images_per_sec": 250.0,
        "output_dir": "/output",
        "data_sha256": "ab" * 32,
        "code_sha256": "cd" * 32,
    }
    assert captured.err == "done: val_acc 0.7500 in 20.0 s\n"
