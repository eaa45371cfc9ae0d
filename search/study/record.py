"""What a study was started with, and refusing a run that would mix other settings into it.

A study's trials are comparable only if they ran the same configuration apart from the
tuned parameters. On creation a study therefore records, as its user attribute
:data:`RECORD`, the job variables every trial runs with that shape the result (those the
job puts in its checkpoint fingerprint, ``job.contract``, at their value given with
``--job-env`` or their default), the search space and the pruner (and, for reference only,
the sampler and the ``--job-env`` settings that do not shape the result, such as
``DATA_URL`` or ``DEVICE``). A later ``search run`` whose settings differ is refused in one
sentence that names the difference and the ways out (:class:`SettingsError`, exit 2), before
anything is written (:func:`check_or_record`, called by :func:`search.study.open_study`
under the creation lock, so drivers starting together record a study once and never refuse
each other).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna

from job.contract import SET_PER_TRIAL, VARIABLES, default, variable
from search.errors import SettingsError
from search.space import build_space, describe

if TYPE_CHECKING:
    from search.settings import Settings

_USERINFO = re.compile(r"://([^:/@]*):[^@/]*@")
"""A URL's ``user:password@``: the password is never recorded (a DATA_URL may carry one)."""

RECORD = "settings"
"""The study user attribute holding what the study was started with."""


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


RETRAINED_WITH = ("DATA_URL",)
"""``--job-env`` settings outside the fingerprint that a retraining still needs: where the data
is (the fingerprint names the data by its digest, a retraining must fetch it)."""


def configuration(study: optuna.Study) -> dict[str, str]:
    """The job variables the study's trials ran with that differ from the job's defaults
    (what a retraining must set besides the tuned parameters), ``DATA_URL`` first when it was
    given without a password (a recorded password is masked); {} without a record."""
    record = recorded(study) or {}
    job: Mapping[str, str] = record.get("job", {})
    given: Mapping[str, str] = record.get("job_env", {})
    where = {k: given[k] for k in RETRAINED_WITH if k in given and ":***@" not in given[k]}
    return where | {k: v for k, v in job.items() if not _same(k, v, default(k))}


NOT_SHAPING_A_RERUN = ("SEED", "DATA_SHA256")
"""Recorded variables a rerun of a configuration does not compare: a confirmation run sets its
own seed, and names its data by the sha256 it reports (``DATA_SHA256`` only checks it)."""


def same_run(then: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether two job settings (recorded fixed variables plus a trial's tuned ones, as job
    variables) train the same configuration: every variable either sets, other than
    :data:`NOT_SHAPING_A_RERUN`, has the same value (a missing one: the job's default)."""
    names = (set(then) | set(now)) - set(NOT_SHAPING_A_RERUN)
    return all(_same(n, str(then.get(n, default(n))), str(now.get(n, default(n)))) for n in names)


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


def check_or_record(study: optuna.Study, record: dict[str, Any], fresh: bool) -> None:
    """Record ``record`` on a study that has none (or, with ``--fresh``, that holds no trial
    that ran); refuse, with SettingsError, a study recorded with other settings."""
    then = recorded(study)
    if then is None or (fresh and not has_results(study)):
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


def has_results(study: optuna.Study) -> bool:
    """Whether the study holds any trial that ran (anything but queued ones)."""
    return any(t.state != optuna.trial.TrialState.WAITING for t in study.get_trials(deepcopy=False))


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
