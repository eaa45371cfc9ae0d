"""What a study was started with, and refusing a run that would mix other settings into it.

A study's trials are comparable only if they ran the same configuration apart from the
tuned parameters. On creation a study therefore records, as its user attribute
:data:`RECORD`, the job variables every trial runs with that shape the result (those the
job puts in its checkpoint fingerprint, ``job.contract``, at their value given with
``--job-env`` or their default), the search space and the pruner (and, for reference only,
the sampler and the ``--job-env`` settings that do not shape the result, such as
``DATA_URL`` or ``DEVICE``). A later ``search run`` whose settings differ is refused in one
sentence that names the difference and the ways out (:class:`SettingsError`, exit 2), before
anything is written.

``--fresh`` keeps the old study under ``<name>-<UTC time>`` (its confirmation runs too), moves
its result files and trial folders into ``<output>/<name>-<UTC time>/``, and starts a new
study under the name.

The check and the record happen under the storage's creation lock, so drivers starting
together on a new study record it once and never refuse each other.
"""

from __future__ import annotations

import datetime
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from job.contract import SET_PER_TRIAL, VARIABLES, default, variable
from search.settings import Settings, SettingsError
from search.space import build_space, describe

_USERINFO = re.compile(r"://([^:/@]*):[^@/]*@")
"""A URL's ``user:password@``: the password is never recorded (a DATA_URL may carry one)."""

RECORD = "settings"
"""The study user attribute holding what the study was started with."""

RESULTS = ("best_params.json", "best.env", "configmap.yaml", "trials.csv", "plots")
"""A study's result files in ``--output``, moved aside with it by ``--fresh``."""

TRIAL_FOLDERS = ("trials", "confirm")
"""The folders of ``--output`` holding each trial's (and confirmation run's) OUTPUT_DIR."""


def record_of(settings: Settings) -> dict[str, Any]:
    """What a study started with ``settings`` records: ``job`` (the compared job variables),
    ``space`` (the space file format), ``pruner``, and for reference ``sampler`` and
    ``job_env`` (the other ``--job-env`` settings)."""
    tuned = settings.space.job_vars()
    job = {
        v.name: settings.job_env.get(v.name, v.default)
        for v in VARIABLES
        if v.fingerprint and v.name not in tuned and v.name not in SET_PER_TRIAL
    }
    others = {
        k: _USERINFO.sub(r"://\1:***@", v) for k, v in settings.job_env.items() if k not in job
    }
    return {
        "job": job,
        "space": settings.space.as_spec(),
        "pruner": settings.pruner,
        "sampler": settings.sampler,
        "job_env": others,
    }


def recorded(study: optuna.Study) -> dict[str, Any] | None:
    """The study's record, or None for a study that has none (made before records)."""
    record = study.user_attrs.get(RECORD)
    return record if isinstance(record, dict) else None


def configuration(study: optuna.Study) -> dict[str, str]:
    """The job variables the study's trials ran with that differ from the job's defaults
    (what a retraining must set besides the tuned parameters); {} without a record."""
    record = recorded(study) or {}
    job: Mapping[str, str] = record.get("job", {})
    return {k: v for k, v in job.items() if not _same(k, v, default(k))}


def differences(then: Mapping[str, Any], now: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(recorded, given) descriptions of every compared setting that differs."""
    found = []
    then_job, now_job = then.get("job", {}), now.get("job", {})
    for name in [n for n in now_job if n in then_job]:
        if not _same(name, then_job[name], now_job[name]):
            found.append((f"{name}={then_job[name]}", f"{name}={now_job[name]}"))
    then_space, now_space = _space(then.get("space", {})), _space(now.get("space", {}))
    for name in [*now_space, *(n for n in then_space if n not in now_space)]:
        if then_space.get(name) != now_space.get(name):
            found.append((_param(name, then_space), _param(name, now_space)))
    if then.get("pruner") != now.get("pruner"):
        found.append((f"pruner {then.get('pruner')}", f"pruner {now.get('pruner')}"))
    return found


def prepare(settings: Settings, say: Callable[[str], None]) -> None:
    """Create the study or check that it was started with ``settings``; with ``--fresh``,
    keep an existing study's results and start it anew. Raises SettingsError (exit 2)
    when the study was started with other settings, or when a new study would reuse
    another study's trial folders."""
    from search.storage import creation_lock, make_storage

    storage = make_storage(settings.storage, retry_seconds=settings.storage_retry)
    record = record_of(settings)

    def check() -> None:
        with creation_lock(storage.url):
            study = _existing(storage, settings.study_name)
            if study is not None and settings.fresh and _has_results(study):
                _keep(storage, study, settings.output, say)
                study = None
            if study is None:
                _refuse_foreign_folders(settings)
                study = optuna.create_study(
                    storage=storage, study_name=settings.study_name, direction="maximize"
                )
            _compare_or_record(study, record, settings)

    storage.call(check)


def _compare_or_record(study: optuna.Study, record: dict[str, Any], settings: Settings) -> None:
    then = recorded(study)
    if then is None or (settings.fresh and not _has_results(study)):
        study.set_user_attr(RECORD, record)
        return
    found = differences(then, record)
    if found:
        was = ", ".join(a for a, _ in found)
        given = ", ".join(b for _, b in found)
        raise SettingsError(
            f"the study {study.study_name!r} was started with {was}, not {given}; rerun with "
            f"its settings, pass --study-name NEW --output DIR for a separate study, or "
            f"--fresh to keep this one's results under a new name and start it again."
        )


def _existing(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _has_results(study: optuna.Study) -> bool:
    """Whether the study holds any trial that ran (anything but queued ones)."""
    return any(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def _refuse_foreign_folders(settings: Settings) -> None:
    """A new study's trial ``n`` writes to ``<output>/trials/n``: refuse to start one there
    while those folders hold another study's runs (their checkpoints would be resumed or
    refused)."""
    for name in TRIAL_FOLDERS:
        folder = settings.output / name
        if folder.is_dir() and any(folder.iterdir()):
            raise SettingsError(
                f"{folder} holds the trial folders of an earlier study, which the new study "
                f"{settings.study_name!r} would reuse; pass another --output for it, or move "
                f"{folder} away."
            )


def _keep(
    storage: optuna.storages.BaseStorage,
    study: optuna.Study,
    output: Path,
    say: Callable[[str], None],
) -> None:
    """``--fresh``: copy the study (and its confirmation runs) to ``<name>-<UTC time>``,
    delete it, and move its files in ``output`` into ``output/<name>-<UTC time>/``."""
    from search.confirm import sibling_name

    name = study.study_name
    kept = f"{name}-{datetime.datetime.now(datetime.UTC):%Y%m%dT%H%M%SZ}"
    trials = len(study.get_trials(deepcopy=False))
    for old, new in ((name, kept), (sibling_name(name), sibling_name(kept))):
        if _existing(storage, old) is None:
            continue
        if _existing(storage, new) is not None:  # a copy an interrupted attempt left
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


def _same(name: str, a: str, b: str) -> bool:
    """Whether two texts of variable ``name`` are the same value (``4`` and ``04``)."""
    if a == b:
        return True
    parse = variable(name).parse
    try:
        return bool(parse(a) == parse(b))
    except ValueError:
        return False


def _space(spec: Mapping[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    return dict(build_space(spec).distributions) if spec else {}


def _param(name: str, space: Mapping[str, optuna.distributions.BaseDistribution]) -> str:
    dist = space.get(name)
    return f"{name} not tuned" if dist is None else describe(name, dist)
