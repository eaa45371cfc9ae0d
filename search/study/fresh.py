"""``--fresh``, and the trial folders a new study must not reuse.

``--fresh`` keeps the old study under ``<name>-<UTC time>`` (its confirmation runs too),
moves its result files and trial folders into ``<output>/<name>-<UTC time>/``, and lets
:func:`search.study.open_study` start a new study under the name. Both happen under the
creation lock that study holds while it opens the study.
"""

from __future__ import annotations

import datetime
import shutil
from collections.abc import Callable
from pathlib import Path

import optuna

from search.errors import SettingsError
from search.study.confirmation import sibling_name
from search.study.create import existing

RESULTS = ("best_params.json", "best.env", "configmap.yaml", "trials.csv", "plots")
"""A study's result files in ``--output``, moved aside with it by ``--fresh``."""

TRIAL_FOLDERS = ("trials", "confirm")
"""The folders of ``--output`` holding each trial's (and confirmation run's) OUTPUT_DIR."""


def refuse_foreign_folders(output: Path, study_name: str) -> None:
    """A new study's trial ``n`` writes to ``<output>/trials/n``: refuse (SettingsError) to
    start one there while those folders hold another study's runs (their checkpoints would
    be resumed or refused)."""
    for name in TRIAL_FOLDERS:
        folder = output / name
        if folder.is_dir() and any(folder.iterdir()):
            raise SettingsError(
                f"{folder} holds the trial folders of an earlier study, which the new study "
                f"{study_name!r} would reuse; pass another --output for it, or move "
                f"{folder} away."
            )


def keep(
    storage: optuna.storages.BaseStorage,
    study: optuna.Study,
    output: Path,
    say: Callable[[str], None],
) -> None:
    """``--fresh``: copy the study (and its confirmation runs) to ``<name>-<UTC time>``,
    delete it, and move its files in ``output`` into ``output/<name>-<UTC time>/``."""
    name = study.study_name
    kept = f"{name}-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}"
    trials = len(study.get_trials(deepcopy=False))
    for old, new in ((name, kept), (sibling_name(name), sibling_name(kept))):
        if existing(storage, old) is None:
            continue
        if existing(storage, new) is not None:  # a copy an interrupted attempt left
            optuna.delete_study(study_name=new, storage=storage)
        optuna.copy_study(
            from_study_name=old, from_storage=storage, to_storage=storage, to_study_name=new
        )
        optuna.delete_study(study_name=old, storage=storage)
    folder = output / kept
    moved = [path for path in (output / n for n in (*RESULTS, *TRIAL_FOLDERS)) if path.exists()]
    if moved:
        folder.mkdir(parents=True, exist_ok=True)
        for path in moved:
            shutil.move(path, folder / path.name)
    where = f" and its files in {folder}" if moved else ""
    say(
        f"--fresh: kept the study {name!r} ({trials} trials) as {kept!r}{where}; "
        f"starting a new study {name!r}."
    )
