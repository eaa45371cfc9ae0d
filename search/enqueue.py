"""``--enqueue FILE``: known configurations the study runs before it samples new ones.

The file (YAML or JSON) is a list of mappings of parameter names to values, each checked
against the search space when the options are read (:func:`load_configurations`); once the
study is open they are queued as WAITING trials (:func:`enqueue`), after the baseline, which
a new study queues first. A configuration the study already holds, in any state, is not
queued again, so rerunning the same command queues nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.space import Space, SpaceError, read_file

if TYPE_CHECKING:
    import optuna

    from search.storage import RetryingStorage


def load_configurations(path: Path, space: Space) -> list[dict[str, Any]]:
    """Read ``path`` and check every configuration in it against ``space``; SpaceError with
    one sentence for a file that cannot be read, is not a list of mappings, or names a
    parameter the space does not tune or a value outside its range."""
    raw = read_file(path, "the --enqueue file")
    if not isinstance(raw, list) or not raw:
        raise SpaceError(
            f"the --enqueue file {path} must be a list of configurations, each a mapping of "
            "parameter names to values."
        )
    configurations = []
    for number, item in enumerate(raw, start=1):
        where = f"configuration {number} of {path}"
        if not isinstance(item, Mapping) or not item:
            raise SpaceError(f"{where} is not a mapping of parameter names to values.")
        space.check(item, where)
        configurations.append(dict(item))
    return configurations


def enqueue(
    study: optuna.Study, storage: RetryingStorage, configurations: Sequence[Mapping[str, Any]]
) -> int:
    """Queue each configuration the study does not hold yet; return how many were queued.

    Done under the creation lock, so drivers starting together queue each one once.
    """
    from search.storage import creation_lock

    if not configurations:
        return 0

    def queue() -> int:
        with creation_lock(storage.url):
            before = len(study.get_trials(deepcopy=False))
            for params in configurations:
                study.enqueue_trial(dict(params), skip_if_exists=True)
            return len(study.get_trials(deepcopy=False)) - before

    return storage.call(queue)
