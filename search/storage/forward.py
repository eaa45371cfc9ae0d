"""The study's storage as Optuna sees it: every ``BaseStorage`` and ``BaseHeartbeat`` method
forwarded to the RDB storage through the retry loop of :class:`~search.storage.retrying.Retrying`.

Reads of a study's trials go through Optuna's cache of the RDB storage (``_CachedStorage``,
the wrapper ``optuna.create_study`` itself puts around an RDB storage named by URL): it keeps
every finished trial it has read (a finished trial never changes) and asks the database
only for the trials that were unfinished at the last read and those created since, so a
read costs the same at 10 trials as at 1,000. Another driver's writes are seen at the next
read, as they are without the cache. Writes bypass it (they go to the RDB storage, exactly
once where a retry could apply them twice), and a read that fails is retried as a whole: the
cache changes only once the database has answered. Counting trials by state
(:meth:`RetryingStorage.state_counts`, ``get_n_trials``) asks the database, exactly.

Each method is written out (not generated) so that the class is a complete, concrete
``BaseStorage`` that type checkers can see.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search._optuna import BaseHeartbeat, CachedStorage, FrozenStudy
from search.storage.counts import state_counts
from search.storage.retrying import Retrying


class RetryingStorage(Retrying, BaseStorage, BaseHeartbeat):
    """An Optuna storage that forwards every call to an :class:`RDBStorage` and retries a
    call that failed because the database could not be reached.

    Optuna only ever calls a storage through the methods of ``BaseStorage`` and
    ``BaseHeartbeat``; each is forwarded with :meth:`_retry`. The writes a second attempt
    would apply twice (creating a study or a trial, deleting a study, changing a trial's
    state) go through :meth:`_write`, exactly once; every other write sets a value and is
    the same when applied twice.
    """

    # -- beyond the storage interface ---------------------------------------------------

    def state_counts(self, study_id: int) -> dict[TrialState, int]:
        """How many of the study's trials are in each state, counted by the database."""
        return self._retry(state_counts, self.backend, study_id)

    def _forget(self) -> None:
        """Drop every cached trial: the next read loads the study's trials again."""
        self.cache = CachedStorage(self.backend)

    # -- BaseStorage and BaseHeartbeat: every method forwarded to the RDB storage ----------

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        study_id = self._write(
            "new study",
            self.backend.create_new_study,
            directions,
            study_name,
            committed=lambda study_id: study_id,
        )
        self._forget()  # SQLite may give a deleted study's id to a new one
        return study_id

    def delete_study(self, study_id: int) -> None:
        self._write("deleted study", self.backend.delete_study, study_id, committed=lambda _: None)
        self._forget()

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_study_user_attr, study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_study_system_attr, study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._retry(self.backend.get_study_id_from_name, study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._retry(self.backend.get_study_name_from_id, study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._retry(self.backend.get_study_directions, study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_study_user_attrs, study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_study_system_attrs, study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._retry(self.backend.get_all_studies)

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        return self._write(
            "new trial",
            self.backend.create_new_trial,
            study_id,
            template_trial,
            committed=lambda new_id: new_id,
        )

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        return self._retry(
            self.backend.set_trial_param, trial_id, param_name, param_value_internal, distribution
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._retry(
            self.backend.get_trial_id_from_study_id_trial_number, study_id, trial_number
        )

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._retry(self.backend.get_trial_number_from_id, trial_id)

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        return self._retry(self.backend.get_trial_param, trial_id, param_name)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        return self._write(
            "trial",
            self.backend.set_trial_state_values,
            trial_id,
            state,
            values,
            ref_id=trial_id,
            committed=lambda _: True,
        )

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        return self._retry(
            self.backend.set_trial_intermediate_value, trial_id, step, intermediate_value
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_trial_user_attr, trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        return self._retry(self.backend.set_trial_system_attr, trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._retry(self.cache.get_trial, trial_id)

    def get_all_trials(
        self, study_id: int, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        return self._retry(self.cache.get_all_trials, study_id, deepcopy, states)

    def get_n_trials(
        self, study_id: int, state: tuple[TrialState, ...] | TrialState | None = None
    ) -> int:
        counts = self.state_counts(study_id)
        if state is None:
            return sum(counts.values())
        wanted = (state,) if isinstance(state, TrialState) else state
        return sum(counts.get(s, 0) for s in wanted)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._retry(self.backend.get_best_trial, study_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_trial_params, trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_trial_user_attrs, trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._retry(self.backend.get_trial_system_attrs, trial_id)

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        return self._retry(self.backend.check_trial_is_updatable, trial_id, trial_state)

    def remove_session(self) -> None:
        return self._retry(self.backend.remove_session)

    def record_heartbeat(self, trial_id: int) -> None:
        return self._retry(self.backend.record_heartbeat, trial_id)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._retry(self.backend._get_stale_trial_ids, study_id)

    def get_heartbeat_interval(self) -> int | None:
        return self._retry(self.backend.get_heartbeat_interval)

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry(self.backend.get_heartbeat_stale_trial_callback)

    def get_failed_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._retry(self.backend.get_failed_trial_callback)
