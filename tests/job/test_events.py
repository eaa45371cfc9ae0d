"""Events on stdout match the contract's TypedDicts exactly (job/events.py)."""

from __future__ import annotations

import json

import pytest

from job.contract import EVENT_VERSION, EVENTS
from job.events import emit


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
        emit("progress", epoch=1)


def test_the_optional_reason_is_allowed_on_error(capsys) -> None:
    emit("error", code=5, message="Out of disk.", reason="disk")
    assert json.loads(capsys.readouterr().out)["reason"] == "disk"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_become_null(capsys, value: float) -> None:
    emit("epoch", **{**_fields("epoch"), "train_loss": value})
    assert json.loads(capsys.readouterr().out)["train_loss"] is None
