"""docs/contract.md says what job/contract.py says: every variable, code, event and file."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from job import contract, predict, records
from search import exits
from tests.conftest import REPO

DOC = (REPO / "docs" / "contract.md").read_text()


def _section(heading: str) -> str:
    """The text under ``heading`` (a markdown heading line) up to the next heading of its level
    or a higher one."""
    level = heading.split(" ", 1)[0]
    start = DOC.index(f"\n{heading}\n") + len(heading) + 2
    end = re.compile(rf"\n#{{1,{len(level)}}} ").search(DOC, start)
    return DOC[start : end.start() if end else None]


def _rows(section: str) -> dict[str, list[str]]:
    """A markdown table's rows, keyed by their first cell (backticks stripped)."""
    rows = {}
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|--") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.mark.parametrize("var", contract.VARIABLES, ids=lambda v: v.name)
def test_every_variable_is_documented_with_its_default_and_meaning(var) -> None:
    row = _rows(_section("## Variables"))[var.name]
    assert row[0] == (f"`{var.default}`" if var.default else "(empty)")
    assert row[1] == var.help


def test_the_doc_lists_no_variable_the_job_lacks() -> None:
    table = _rows(_section("## Variables"))
    assert set(table) - {"variable"} == contract.VARIABLE_NAMES


@pytest.mark.parametrize(
    ("heading", "code"),
    [("## Exit codes of the job", code) for code in contract.ExitCode]
    + [("## Exit codes of the search driver", code) for code in exits.DriverExit]
    + [("## Exit codes of the predictor", code) for code in predict.PredictExit],
    ids=lambda x: x if isinstance(x, str) else f"{type(x).__name__}.{x.name}",
)
def test_every_exit_code_is_documented_by_value_and_name(heading, code) -> None:
    row = _rows(_section(heading))[str(int(code))]
    assert row[0] == f"`{code.name}`"


@pytest.mark.parametrize(
    ("heading", "codes"),
    [
        ("## Exit codes of the job", contract.ExitCode),
        ("## Exit codes of the search driver", exits.DriverExit),
        ("## Exit codes of the predictor", predict.PredictExit),
    ],
    ids=["job", "driver", "predictor"],
)
def test_the_doc_lists_no_exit_code_that_does_not_exist(heading, codes) -> None:
    documented = set(_rows(_section(heading))) - {"code"}
    assert documented == {str(int(c)) for c in codes}


@pytest.mark.parametrize("name", sorted(contract.EVENTS))
def test_every_event_has_an_example_with_exactly_its_fields(name) -> None:
    kind = contract.EVENTS[name]
    block = re.search(r"```json\n(.*?)\n```", _section(f"### `{name}`"), re.S)
    assert block is not None, f"no JSON example under ### `{name}`"
    example = json.loads(block.group(1))
    assert example["v"] == contract.EVENT_VERSION and example["event"] == name
    assert kind.__required_keys__ <= set(example) <= kind.__required_keys__ | kind.__optional_keys__


@pytest.mark.parametrize("name", [*contract.OUTPUTS, contract.JOB_LOG])
def test_every_output_file_is_documented(name) -> None:
    assert name in _rows(_section("## Output layout"))


@pytest.mark.parametrize("name", [*contract.PROMOTED, *contract.ARTIFACTS])
def test_promoted_and_uploaded_files_are_named_in_the_layout(name) -> None:
    assert f"`{name}`" in _section("## Output layout")


def _history_fields() -> dict[str, list[str]]:
    return {k: v for k, v in _rows(_section("### `history.json`")).items() if k != "field"}


def test_the_doc_lists_exactly_the_history_records_fields_in_order() -> None:
    fields = [f.name for f in dataclasses.fields(records.TrainedEpoch)]
    assert list(_history_fields()) == fields
    assert {f.name for f in dataclasses.fields(records.Evaluation)} <= set(fields)


def test_the_doc_says_which_history_entries_have_each_field() -> None:
    evaluation = {f.name for f in dataclasses.fields(records.Evaluation)}
    for name, (_type, _unit, entries, _meaning) in _history_fields().items():
        assert entries == ("all" if name in evaluation else "epochs ≥ 1"), name


def _trained_entry(epoch: int = 1) -> dict:
    return {
        "epoch": epoch,
        "train_loss": 1.5,
        "val_loss": 1.25,
        "val_acc": 0.5,
        "lrs": [0.001, 0.002],
        "train_seconds": 2.0,
        "eval_seconds": 0.5,
        "images_per_sec": 200.0,
    }


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        ({"epoch": 0, "val_loss": 2.3, "val_acc": 0.1, "eval_seconds": 0.25}, records.Evaluation),
        (_trained_entry(), records.TrainedEpoch),
    ],
    ids=["evaluation", "trained"],
)
def test_a_history_entry_round_trips_through_its_record_with_its_key_order(entry, kind) -> None:
    record = records.record_from_json(entry)
    assert type(record) is kind
    assert list(record.to_json().items()) == list(entry.items())
    assert json.loads(json.dumps(record.to_json())) == entry


def test_a_trained_epochs_lrs_are_immutable_in_the_record_and_a_list_in_json() -> None:
    record = records.record_from_json(_trained_entry())
    assert record.lrs == (0.001, 0.002) and record.to_json()["lrs"] == [0.001, 0.002]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.val_acc = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "entry",
    [
        {"epoch": 0, "val_loss": 2.3, "val_acc": 0.1},  # a key missing
        {**_trained_entry(), "surprise": 1},  # a key too many
        {k: v for k, v in _trained_entry().items() if k != "lrs"},  # neither record
    ],
    ids=["missing", "extra", "neither"],
)
def test_an_entry_that_is_neither_record_is_refused(entry) -> None:
    with pytest.raises(ValueError, match="not a history entry"):
        records.record_from_json(entry)


def test_the_doc_names_exactly_the_tunable_variables() -> None:
    start = DOC.index("(`TUNABLE`):") + len("(`TUNABLE`):")
    listed = re.findall(r"`([A-Z_]+)`", DOC[start : DOC.index(".", start)])
    assert sorted(listed) == sorted(contract.TUNABLE.values())
