"""``--enqueue FILE``: its configurations are checked against the space
(search.space.load_configurations), then queued when the study opens (search.study) and run
first (after the baseline), each queued once however often the command is rerun."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search.space import SpaceError, default_space, load_configurations
from search.study import open_study
from tests.search.helpers import stub_driver, stub_settings


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_file_of_configurations_is_read(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"known{suffix}"
    path.write_text('[{"max_lr": 0.02, "batch_size": 256}, {"max_lr": 0.005}]')
    assert load_configurations(path, default_space()) == [
        {"max_lr": 0.02, "batch_size": 256},
        {"max_lr": 0.005},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {momentum: 0.9}\n", "configuration 1 of {path} sets 'momentum', which the search"),
        ("- {max_lr: 0.02}\n- {max_lr: 2.0}\n", "configuration 2 of {path} sets max_lr=2.0, out"),
        ("- {batch_size: 300}\n", "sets batch_size=300, outside the space's batch_size: {{choi"),
        ("max_lr: 0.02\n", "must be a list of configurations"),
        ("- 0.02\n", "configuration 1 of {path} is not a mapping"),
        ("- {max_lr: [0.02\n", "is not valid YAML/JSON"),
    ],
    ids=["unknown", "out-of-range", "not-a-choice", "not-a-list", "not-a-mapping", "yaml"],
)
def test_a_bad_file_is_refused_in_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "known.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=re.escape(message.format(path=path))):
        load_configurations(path, default_space())


def test_queued_configurations_run_first_after_the_baseline(tmp_path: Path) -> None:
    known = [{"max_lr": 0.05}, {"max_lr": 0.002}]
    driver = stub_driver(tmp_path, "*=done", trials=3, enqueue=known)
    driver.run()
    lrs = [t.params["max_lr"] for t in driver.study.get_trials(deepcopy=False)]
    assert lrs == [0.01, 0.05, 0.002]  # the baseline (the tutorial's 0.01), then the file's


def test_a_rerun_queues_no_configuration_twice(tmp_path: Path) -> None:
    settings = stub_settings(tmp_path, "*=done", trials=1, enqueue=[{"max_lr": 0.05}])
    assert open_study(settings, print).queued == 1
    opened = open_study(settings, print)
    assert opened.queued == 0
    assert len(opened.study.get_trials(deepcopy=False)) == 2  # the baseline and the one
