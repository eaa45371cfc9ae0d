"""Baseline runs reused across studies: a confirmation run another study already paid for.

Every study confirms against the same baseline (the tutorial's recipe), so a later study in
the same database often needs a baseline run that an earlier one already made. A run is
reused when everything that shapes it is the same: the job settings the studies recorded
(less ``SEED`` and ``DATA_SHA256``, see :func:`search.study.record.same_run`) with the
baseline's parameters, the seed, and the ``data_sha256`` and ``code_sha256`` the runs
reported (this study's own COMPLETE trials name the data and code it runs with; when they
disagree, or do not say, nothing is reused). The reused run is copied into this study's
sibling as a COMPLETE trial with the user attribute ``reused_from`` (``<study>#<trial>``, the
study that holds the run: ``resnet-job.confirm#4``),
under the plan's lock, so it is counted once. Only confirmation runs are reused: a study's
own baseline trial ran on its selection seed, which the verdict sets aside.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from search.space import to_env
from search.study.record import RECORD, same_run
from search.study.runs import CONFIRMS, NUMBER, SEED, SUFFIX, key
from search.trial import DIGESTS

REUSED_FROM = "reused_from"
"""The user attribute of a reused run: where it was first run, ``<study>#<trial>``."""


def digests(study: optuna.Study) -> dict[str, str] | None:
    """The data and code digests every COMPLETE trial of ``study`` reported; None when they
    disagree or a trial does not say (a run of an older job)."""
    seen = {
        tuple(t.user_attrs.get(name) for name in DIGESTS)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    }
    if len(seen) != 1:
        return None
    (values,) = seen
    found = {name: v for name, v in zip(DIGESTS, values, strict=True) if isinstance(v, str) and v}
    return found if len(found) == len(DIGESTS) else None


class Reuse:
    """Finds, for this study's baseline, the confirmation runs other studies hold."""

    def __init__(self, study: optuna.Study, storage: BaseStorage, baseline: FrozenTrial) -> None:
        self.study, self.storage, self.baseline = study, storage, baseline
        self.digests = digests(study)
        self.settings = _settings(study.user_attrs, baseline.params)

    def source(self, seed: int) -> tuple[str, FrozenTrial] | None:
        """A COMPLETE baseline run on ``seed`` that another study made with everything that
        shapes it the same: (its study's name, the run); None when there is none."""
        if self.digests is None or self.settings is None:
            return None
        for frozen in self.storage.get_all_studies():
            name = frozen.study_name
            if not name.endswith(SUFFIX) or name == self.study.study_name + SUFFIX:
                continue
            sibling_id = self.storage.get_study_id_from_name(name)
            found = self._in(name, sibling_id, frozen.user_attrs, seed)
            if found is not None:
                return name, found
        return None

    def _in(
        self, name: str, sibling_id: int, attrs: Mapping[str, Any], seed: int
    ) -> FrozenTrial | None:
        baseline = (attrs.get("plan") or {}).get("baseline")
        if not self._owner(name[: -len(SUFFIX)], baseline):
            return None
        wanted = self.digests or {}
        runs = self.storage.get_all_trials(
            sibling_id, deepcopy=False, states=(TrialState.COMPLETE,)
        )
        for run in sorted(runs, key=lambda t: t.number):
            same_data_and_code = all(run.user_attrs.get(k) == v for k, v in wanted.items())
            if key(run.params) == (baseline, seed) and same_data_and_code and run.value is not None:
                return run
        return None

    def _owner(self, name: str, baseline: Any) -> bool:
        """Whether the study ``name``'s baseline runs had the settings this study's have."""
        try:
            study_id = self.storage.get_study_id_from_name(name)
        except KeyError:
            return False
        trials = self.storage.get_all_trials(study_id, deepcopy=False)
        params = next((t.params for t in trials if t.number == baseline), None)
        attrs = self.storage.get_study_user_attrs(study_id)
        theirs = None if params is None else _settings(attrs, params)
        return theirs is not None and self.settings is not None and same_run(theirs, self.settings)

    def copy(self, sibling: optuna.Study, origin: str, run: FrozenTrial, seed: int) -> None:
        """Add ``run`` (of the sibling ``origin``) to ``sibling`` as this study's baseline run
        on ``seed``: COMPLETE, with ``reused_from``."""
        number = self.baseline.number
        attrs = {k: v for k, v in run.user_attrs.items() if k != "driver"}
        attrs.update({CONFIRMS: number, SEED: seed})
        attrs.setdefault(REUSED_FROM, f"{origin}#{run.number}")
        sibling.add_trial(
            optuna.trial.create_trial(
                params={**self.baseline.params, CONFIRMS: number, SEED: seed},
                distributions={**self.baseline.distributions, CONFIRMS: NUMBER, SEED: NUMBER},
                value=run.value,
                user_attrs=attrs,
            )
        )


def _settings(attrs: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, str] | None:
    """A study's recorded job settings (from its user attributes) with a trial's parameters
    as job variables; None for a study that recorded none."""
    record = attrs.get(RECORD)
    if not isinstance(record, dict):
        return None
    return {**{k: str(v) for k, v in record.get("job", {}).items()}, **to_env(dict(params))}
