"""A study's progress on stderr: one line per trial this driver recorded.

``k/N finished``, the trial (number, state, val_acc, epochs, seconds), the best trial so
far and an ETA for the budget, from the pace of every driver of the study since this one
started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.study import FINISHED
from search.study.confirmation import CONFIRMS, SEED, Tally


class Progress:
    """Call it with each recorded trial (``Driver.run(on_trial=...)``); it prints a line."""

    def __init__(
        self,
        study: optuna.Study,
        budget: int,
        echo: Callable[[str], None],
        confirmations: Callable[[], Tally | None] | None = None,
    ) -> None:
        self.study = study
        self.budget = budget
        self.echo = echo
        self.confirmations = confirmations
        self._lock = threading.Lock()  # workers call it concurrently; lines stay whole
        self._t0 = time.monotonic()
        self._finished_at_start = len(study.get_trials(deepcopy=False, states=FINISHED))

    def __call__(self, trial: FrozenTrial) -> None:
        """Print the line for ``trial``, just recorded."""
        with self._lock:
            self.echo(self.line(trial))

    def line(self, trial: FrozenTrial) -> str:
        """``k/N finished | trial … | best … | ETA …`` for ``trial``; for a confirmation run
        ``round r of R | k/M confirmations at most | run … confirms trial T, seed S``."""
        confirming = CONFIRMS in trial.user_attrs and self.confirmations is not None
        tally = self.confirmations() if confirming and self.confirmations else None
        if tally is not None:
            attrs = trial.user_attrs
            seed = int(trial.params.get(SEED, attrs.get(SEED, -1)))
            return (
                f"round {tally.round_of(seed)} of {len(tally.seeds)} | "
                f"{tally.done}/{tally.at_most} "
                f"confirmations at most | run {trial.number} confirms trial {attrs[CONFIRMS]}, "
                f"seed {attrs.get(SEED)}: {_trial(trial).split(' ', 2)[2]}"
            )
        trials = self.study.get_trials(deepcopy=False)
        finished = sum(t.state in FINISHED for t in trials)
        parts = [f"{finished}/{self.budget} finished", _trial(trial)]
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        if complete:
            best = max(complete, key=lambda t: (t.value or 0.0, -t.number))
            parts.append(f"best trial {best.number} val_acc {best.value:.4f}")
        parts.append(f"ETA {self._eta(finished)}")
        return " | ".join(parts)

    def _eta(self, finished: int) -> str:
        remaining = self.budget - finished
        if remaining <= 0:
            return "0 s (budget met)"
        done_here = finished - self._finished_at_start
        if done_here <= 0:
            return "unknown yet"
        return duration(remaining * (time.monotonic() - self._t0) / done_here)


def _trial(trial: FrozenTrial) -> str:
    attrs = trial.user_attrs
    text = f"trial {trial.number} {trial.state.name}"
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        text += f" val_acc {trial.value:.4f}"
    elif trial.state == TrialState.PRUNED and trial.intermediate_values:
        last = max(trial.intermediate_values)
        text += f" at val_acc {trial.intermediate_values[last]:.4f}"
    elif trial.state == TrialState.FAIL:
        text += f" ({attrs.get('fail_reason', '?')})"
    epochs = attrs.get("epochs")
    seconds = attrs.get("seconds")
    if epochs is not None and seconds is not None:
        text += f", {epochs} epoch{'s' if epochs != 1 else ''} in {duration(float(seconds))}"
    return text


def duration(seconds: float) -> str:
    """``42 s``, ``5m07s`` or ``3h05m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
