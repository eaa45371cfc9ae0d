"""The confirmation phase's plan and statistics: which runs confirm which trials, and what
they show.

After the budget, the top ``K`` COMPLETE configurations and the baseline are each trained
again on ``S - 1`` more seeds; with the trial itself (the study's own seed) every
configuration then has ``S`` runs on the same seeds, so two configurations are compared seed
by seed (a paired comparison). The runs are trials of a sibling study, ``<study>.confirm``:
the study's sampler never sees them, and its best trial stays a single-seed figure. Each run's
parameters are the configuration's plus ``confirms`` (the trial number it confirms) and
``seed``, so a run queued again after its driver died still says what it is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search._optuna import quiet_experimental
from search.storage import creation_lock

SUFFIX = ".confirm"
"""The sibling study's name is the study's plus this."""

CONFIRMS = "confirms"
SEED = "seed"
"""The parameters (and user attributes) naming what a confirmation run confirms, its seed."""

_NUMBER = optuna.distributions.IntDistribution(0, 2**31 - 1)

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
"""Two-sided 95 % quantiles of Student's t for 1..10 degrees of freedom; beyond: 2.0 (df ≤ 30
is within 0.07 of it) — confirmations use a handful of seeds."""


def sibling_name(study_name: str) -> str:
    """The name of the study holding ``study_name``'s confirmation runs."""
    return study_name + SUFFIX


def seeds(study_seed: int, count: int) -> list[int]:
    """The ``count`` seeds every confirmed configuration runs on: the study's own first, then
    the next whole numbers (deterministic, and distinct from it)."""
    return [study_seed + i for i in range(count)]


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The ``k`` best COMPLETE trials with distinct parameters, best first (ties: lower
    number)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
    chosen: list[FrozenTrial] = []
    for trial in ranked:
        if len(chosen) >= k:
            break
        if all(trial.params != other.params for other in chosen):
            chosen.append(trial)
    return chosen


def configurations(study: optuna.Study, k: int, baseline: FrozenTrial | None) -> list[FrozenTrial]:
    """The trials to confirm: the top ``k`` and the baseline (once, even when among them)."""
    chosen = top_trials(study, k)
    if baseline is not None and all(baseline.params != t.params for t in chosen):
        chosen.append(baseline)
    return chosen


def open_sibling(study: optuna.Study) -> optuna.Study:
    """Create or load the sibling study in ``study``'s storage (never pruned, random sampler:
    every run it holds is queued, none is sampled)."""
    sibling = optuna.create_study(
        storage=study._storage,  # the same (retrying) storage object as the study's
        study_name=sibling_name(study.study_name),
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
        load_if_exists=True,
    )
    if sibling.metric_names is None:
        with quiet_experimental():
            sibling.set_metric_names(["val_acc"])
    return sibling


def find_sibling(study: optuna.Study) -> optuna.Study | None:
    """The sibling study, None when the phase never started."""
    name = sibling_name(study.study_name)
    try:
        return optuna.load_study(study_name=name, storage=study._storage)
    except KeyError:
        return None


def plan(
    study: optuna.Study,
    url: str,
    k: int,
    seed_list: Sequence[int],
    baseline: FrozenTrial | None,
) -> optuna.Study:
    """Queue every confirmation run the study's current top ``k`` and baseline still lack, and
    record the plan; return the sibling study.

    Done under the creation lock, so drivers finishing together queue each run once. A run is
    missing when no trial of the sibling (in any state) has its ``confirms`` and ``seed``:
    a run that failed for good is not queued again (its driver's retries are the retries).
    """
    with creation_lock(url):
        sibling = open_sibling(study)
        chosen = configurations(study, k, baseline)
        have = {_identity(t) for t in sibling.get_trials(deepcopy=False)}
        for trial in chosen:
            for seed in seed_list[1:]:
                if (trial.number, seed) not in have:
                    sibling.enqueue_trial({**trial.params, CONFIRMS: trial.number, SEED: seed})
        sibling.set_user_attr(
            "plan",
            {
                "trials": [t.number for t in chosen],
                "baseline": None if baseline is None else baseline.number,
                "seeds": list(seed_list),
            },
        )
    return sibling


def suggest_identity(trial: optuna.Trial) -> tuple[int, int]:
    """A confirmation run's ``confirms`` and ``seed`` (fixed by the plan's queue)."""
    confirms = trial.suggest_int(CONFIRMS, _NUMBER.low, _NUMBER.high)
    seed = trial.suggest_int(SEED, _NUMBER.low, _NUMBER.high)
    trial.set_user_attr(CONFIRMS, confirms)
    trial.set_user_attr(SEED, seed)
    return confirms, seed


def planned(sibling: optuna.Study) -> int:
    """Runs the current plan asks for."""
    spec = sibling.user_attrs.get("plan") or {}
    return len(spec.get("trials", ())) * max(0, len(spec.get("seeds", ())) - 1)


def done(sibling: optuna.Study) -> int:
    """Runs of the current plan that completed (each counted once)."""
    spec = sibling.user_attrs.get("plan") or {}
    wanted = {(n, s) for n in spec.get("trials", ()) for s in spec.get("seeds", ())[1:]}
    return len(wanted & {_key(t.params) for t in _complete(sibling)})


def _key(params: dict[str, Any]) -> tuple[Any, Any]:
    return params.get(CONFIRMS), params.get(SEED)


def _identity(trial: FrozenTrial) -> tuple[Any, Any]:
    """What a run confirms and its seed; a queued run has them only as fixed parameters."""
    return _key(trial.params or trial.system_attrs.get("fixed_params") or {})


def _complete(sibling: optuna.Study) -> list[FrozenTrial]:
    return sibling.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


# -- statistics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """One confirmed configuration: its trial, parameters and ``val_acc`` per seed (None:
    that run did not complete)."""

    trial: int
    params: dict[str, Any]
    values: list[float | None]

    @property
    def measured(self) -> list[float]:
        return [v for v in self.values if v is not None]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.measured) if self.measured else math.nan

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds (0 with one run)."""
        return statistics.stdev(self.measured) if len(self.measured) > 1 else 0.0

    def as_json(self, seed_list: Sequence[int]) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "params": self.params,
            "val_acc": dict(zip((str(s) for s in seed_list), self.values, strict=True)),
            "mean": _finite(self.mean),
            "std": _finite(self.std),
        }


@dataclass(frozen=True)
class Confirmation:
    """What the phase showed: every configuration, the challenger (the best mean other than
    the baseline), the winner (the challenger when its mean beats the baseline's, else the
    baseline) and the paired comparison of challenger and baseline."""

    seeds: list[int]
    configurations: list[Configuration]
    baseline: Configuration | None
    challenger: Configuration | None

    @property
    def winner(self) -> Configuration | None:
        if self.challenger is None or self.baseline is None:
            return self.challenger or self.baseline
        return self.challenger if self.challenger.mean > self.baseline.mean else self.baseline

    @property
    def baseline_wins(self) -> bool:
        return self.baseline is not None and self.winner is self.baseline

    def differences(self) -> list[float]:
        """Challenger minus baseline, seed by seed, over the seeds both completed."""
        if self.challenger is None or self.baseline is None:
            return []
        pairs = zip(self.challenger.values, self.baseline.values, strict=True)
        return [c - b for c, b in pairs if c is not None and b is not None]

    def difference(self) -> float | None:
        if self.challenger is None or self.baseline is None:
            return None
        return self.challenger.mean - self.baseline.mean

    def interval(self) -> tuple[float, float] | None:
        """The 95 % t-interval of the mean paired difference (None below two pairs)."""
        diffs = self.differences()
        if len(diffs) < 2:
            return None
        centre = statistics.fmean(diffs)
        df = len(diffs) - 1
        half = (_T975[df - 1] if df <= len(_T975) else 2.0) * statistics.stdev(diffs)
        half /= math.sqrt(len(diffs))
        return centre - half, centre + half

    def noise(self) -> float | None:
        """The pooled standard deviation of one run over seeds, across the configurations
        with two or more runs (root mean of their variances); None without any."""
        spread = [c.std**2 for c in self.configurations if len(c.measured) > 1]
        return math.sqrt(statistics.fmean(spread)) if spread else None

    def verdict(self) -> dict[str, Any] | None:
        difference, interval = self.difference(), self.interval()
        if difference is None or self.challenger is None:
            return None
        return {
            "trial": self.challenger.trial,
            "difference": _finite(difference),
            "interval": None if interval is None else list(interval),
            "significant": interval is not None and (interval[0] > 0 or interval[1] < 0),
        }

    def as_json(self) -> dict[str, Any]:
        winner = self.winner
        return {
            "seeds": self.seeds,
            "configurations": [c.as_json(self.seeds) for c in self.configurations],
            "baseline": None if self.baseline is None else self.baseline.trial,
            "winner": None if winner is None else winner.trial,
            "verdict": self.verdict(),
            "noise": self.noise(),
        }

    def line(self) -> str:
        """The verdict in one line: ``trial 7: 0.452 ± 0.006 over 3 seeds vs baseline …``."""
        c, b = self.challenger, self.baseline
        if c is None:
            return "no configuration was confirmed."
        text = f"trial {c.trial}: {_pm(c)} over {len(c.measured)} seeds"
        if b is None:
            return text + " (the baseline did not complete: no comparison)"
        text += f" vs baseline {_pm(b)}: {c.mean - b.mean:+.3f}"
        interval = self.interval()
        if interval is not None:
            text += f" (95 % interval {interval[0]:+.3f}..{interval[1]:+.3f})"
        return text

    def baseline_sentence(self) -> str:
        """Said when the baseline is exported."""
        assert self.baseline is not None
        return (
            f"no confirmed configuration beats the baseline's mean {self.baseline.mean:.4f}; "
            f"exporting the baseline (trial {self.baseline.trial}, the tutorial's defaults)."
        )

    def markdown(self) -> str:
        """The table and the verdict, for the dashboard's note."""
        head = "| trial | " + " | ".join(f"seed {s}" for s in self.seeds) + " | mean | std |"
        rows = [head, "|---" * (len(self.seeds) + 3) + "|"]
        for c in self.configurations:
            label = f"{c.trial} (baseline)" if c is self.baseline else str(c.trial)
            cells = ["–" if v is None else f"{v:.4f}" for v in c.values]
            rows.append(f"| {label} | " + " | ".join(cells) + f" | {c.mean:.4f} | {c.std:.4f} |")
        winner = self.winner
        verdict = self.baseline_sentence() if self.baseline_wins else self.line()
        exported = "" if winner is None else f"Exported: trial {winner.trial}.\n\n"
        return "## Confirmation over seeds\n\n" + "\n".join(rows) + f"\n\n{exported}{verdict}\n"


def summarise(study: optuna.Study, sibling: optuna.Study) -> Confirmation | None:
    """The phase's result from the plan recorded in ``sibling``; None without a plan."""
    spec = sibling.user_attrs.get("plan")
    if not spec:
        return None
    seed_list = [int(s) for s in spec["seeds"]]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    runs: dict[tuple[Any, Any], float] = {}
    for t in sorted(_complete(sibling), key=lambda t: t.number, reverse=True):
        if t.value is not None:
            runs[_key(t.params)] = t.value  # the first completed run of a key wins
    found: list[Configuration] = []
    for number in spec["trials"]:
        trial = by_number[number]
        values = [trial.value] + [runs.get((number, s)) for s in seed_list[1:]]
        found.append(Configuration(number, dict(trial.params), values))
    found.sort(key=lambda c: (-c.mean if c.measured else math.inf, c.trial))
    baseline = next((c for c in found if c.trial == spec.get("baseline")), None)
    challenger = next((c for c in found if c is not baseline and c.measured), None)
    return Confirmation(seed_list, found, baseline, challenger)


def _pm(c: Configuration) -> str:
    return f"{c.mean:.3f} ± {c.std:.3f}"


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def confirmation_of(study: optuna.Study) -> Confirmation | None:
    """The phase's result for ``study`` (None: the phase never planned anything)."""
    sibling = find_sibling(study)
    return None if sibling is None else summarise(study, sibling)


MARGIN_FACTOR = 1.645 * math.sqrt(2)
"""PROMOTE_MARGIN = this × the pooled seed noise: the one-sided 95 % bound of the difference
of two single-seed runs of equally good recipes (each with that noise), so a challenger
promotes on noise alone about one time in twenty."""


def promote_margin(confirmation: Confirmation | None) -> float | None:
    """The ``PROMOTE_MARGIN`` the measured seed noise calls for (None: not measured)."""
    noise = None if confirmation is None else confirmation.noise()
    return None if noise is None else round(MARGIN_FACTOR * noise, 4)
