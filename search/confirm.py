"""The confirmation race's result, as the verdict line, the table and ``best_params.json``.

The plan (which runs confirm which trials, round by round, in ``<study>.confirm``) is
:mod:`search.study.confirmation`; the statistics (the two-way model, the comparisons with the
baseline, who is dropped, the winner) are :func:`search.racing.standing`. This module only
reads the runs back for it and says what it found. A study confirmed by the phase before
rounds is read by :mod:`search.confirm_legacy`.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Protocol

import optuna

from search import racing
from search.study.confirmation import PLAN, find_sibling, replay, reused, values


class Result(Protocol):
    """What the report and the console read of a confirmation, old or new."""

    @property
    def winner_trial(self) -> int | None: ...
    @property
    def baseline_wins(self) -> bool: ...
    def winner_summary(self) -> str: ...
    def margin(self) -> float | None: ...
    def as_json(self) -> dict[str, Any]: ...
    def summary(self) -> str: ...
    def baseline_sentence(self) -> str: ...
    def markdown(self) -> str: ...


@dataclass(frozen=True)
class Configuration:
    """One raced configuration: its trial, parameters, the study's single-seed value (for
    reference), its ``val_acc`` on each fresh seed the verdict used (None: no COMPLETE run),
    its fresh-seed mean and the round it was dropped after (None: raced to the end)."""

    trial: int
    params: dict[str, Any]
    study_value: float | None
    values: dict[int, float | None]
    mean: float | None
    dropped: int | None

    @property
    def measured(self) -> list[float]:
        return [v for v in self.values.values() if v is not None]

    @property
    def std(self) -> float:
        """The sample standard deviation over its fresh seeds (0 with one run)."""
        return statistics.stdev(self.measured) if len(self.measured) > 1 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "params": self.params,
            "study_value": self.study_value,
            "val_acc": {str(s): v for s, v in self.values.items()},
            "mean": self.mean,
            "std": self.std,
            "dropped": self.dropped,
        }


@dataclass(frozen=True)
class Confirmation:
    """What the race showed: the configurations (best fresh mean first), the baseline, the
    standing (:class:`search.racing.Standing`) and how the phase ran."""

    seeds: list[int]
    """Every fresh seed the policy allows, in round order."""
    used: list[int]
    """The fresh seeds of the rounds analysed: those the verdict used."""
    configurations: list[Configuration]
    baseline: Configuration
    standing: racing.Standing
    policy: racing.Policy
    reused: int

    @property
    def winner_trial(self) -> int:
        return self.standing.winner

    @property
    def winner(self) -> Configuration:
        return next(c for c in self.configurations if c.trial == self.standing.winner)

    @property
    def baseline_wins(self) -> bool:
        return self.standing.winner == self.baseline.trial

    @property
    def challenger(self) -> Configuration | None:
        """The configuration the verdict compares with the baseline: the winner, or, when the
        baseline wins, the best fresh mean among the others."""
        if not self.baseline_wins:
            return self.winner
        others = (c for c in self.configurations if c is not self.baseline)
        return next((c for c in others if c.trial in self.standing.comparisons), None)

    def winner_summary(self) -> str:
        w = self.winner
        return f"mean val_acc {w.mean or 0.0:.4f} over {len(w.measured)} fresh seeds"

    def margin(self) -> float | None:
        """PROMOTE_MARGIN from the pooled noise and its degrees of freedom (None: no noise)."""
        noise = self.standing.noise
        return None if noise is None else racing.promote_margin(noise, self.standing.df)

    def verdict(self) -> dict[str, Any] | None:
        c = self.challenger
        comparison = None if c is None else self.standing.comparisons.get(c.trial)
        if comparison is None:
            return None
        return {**_comparison(comparison), "seeds": self.used, "claim": self.standing.claim}

    def as_json(self) -> dict[str, Any]:
        return {
            "policy": {"configurations": self.policy.configurations, "seeds": self.policy.seeds},
            "seeds": self.seeds,
            "rounds": self.standing.rounds,
            "configurations": [c.as_json() for c in self.configurations],
            "baseline": self.baseline.trial,
            "winner": self.winner_trial,
            "verdict": self.verdict(),
            "comparisons": [_comparison(c) for c in self.standing.comparisons.values()],
            "noise": {
                "std": self.standing.noise,
                "df": self.standing.df,
                "method": self.standing.method,
            },
            "reused": self.reused,
        }

    def summary(self) -> str:
        """The verdict in one line, as ``search best`` and the run's summary print it."""
        rounds = self.standing.rounds
        head = (
            f"confirmed over fresh seeds {self.used} in {rounds} round{'s' * (rounds != 1)}"
            f" ({self.reused} reused run{'s' * (self.reused != 1)}): "
        )
        return head + self.line() + self._dropped()

    def line(self) -> str:
        """``trial 7: 0.452 ± 0.006 over 3 seeds vs baseline …: +0.021 (95 % family-wise
        bounds …)``."""
        c, b = self.challenger, self.baseline
        if c is None:
            return f"no configuration was raced against the baseline {_pm(b)}"
        text = f"trial {c.trial}: {_pm(c)} over {len(c.measured)} seeds vs baseline {_pm(b)}"
        comparison = self.standing.comparisons.get(c.trial)
        if comparison is None:
            return text
        text += f": {comparison.difference:+.3f}"
        if comparison.interval is not None:
            low, high = comparison.interval
            # Each bound is one-sided, Bonferroni-split over the challengers raced and the looks
            # the race could take (search/racing.py): together they hold at ``level``.
            looks, compared = max(self.policy.seeds - 1, 1), len(self.standing.comparisons)
            text += (
                f" ({self.policy.level * 100:g} % family-wise bounds {low:+.3f}..{high:+.3f} "
                f"over {compared} challenger{'s' * (compared != 1)} × {looks} look"
                f"{'s' * (looks != 1)})"
            )
        return text

    def _dropped(self) -> str:
        dropped = sorted(self.standing.dropped.items(), key=lambda item: (item[1], item[0]))
        if not dropped:
            return ""
        return "; dropped: " + ", ".join(f"trial {t} after round {r}" for t, r in dropped)

    def baseline_sentence(self) -> str:
        """Said when the baseline is exported."""
        return (
            f"no confirmed configuration beats the baseline's fresh-seed mean "
            f"{self.baseline.mean or 0.0:.4f}; exporting the baseline (trial "
            f"{self.baseline.trial}, the tutorial's defaults)."
        )

    def markdown(self) -> str:
        """The table and the verdict, for the dashboard's note."""
        head = (
            "| trial | study value | "
            + " | ".join(f"seed {s}" for s in self.used)
            + " | fresh mean | std | dropped after |"
        )
        rows = [head, "|---" * (len(self.used) + 5) + "|"]
        for c in self.configurations:
            label = f"{c.trial} (baseline)" if c is self.baseline else str(c.trial)
            cells = ["–" if v is None else f"{v:.4f}" for v in c.values.values()]
            rows.append(
                f"| {label} | {_number(c.study_value)} | " + " | ".join(cells)
                + f" | {_number(c.mean)} | {c.std:.4f} | "
                + ("–" if c.dropped is None else f"round {c.dropped}") + " |"
            )  # fmt: skip
        verdict = self.baseline_sentence() if self.baseline_wins else self.summary()
        return (
            "## Confirmation over seeds\n\n" + "\n".join(rows)
            + f"\n\nExported: trial {self.winner_trial}.\n\n{verdict}\n\n"
            + f"Noise: {self.standing.method}\n"
        )  # fmt: skip


def summarise(study: optuna.Study, sibling: optuna.Study) -> Confirmation | None:
    """The race's result from the plan recorded in ``sibling``; None before a round ended."""
    spec = sibling.user_attrs[PLAN]
    runs = sibling.get_trials(deepcopy=False)
    rounds = replay(runs, spec)
    used = list(rounds.seeds[: rounds.finished])
    if not used:
        return None
    chosen, baseline = list(spec["trials"]), int(spec["baseline"])
    scores = {
        n: {s: v for s, v in row.items() if s in used} for n, row in values(runs, chosen).items()
    }
    policy = racing.Policy(**spec["policy"])
    standing = racing.standing(scores, baseline, used, policy)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    found = [
        Configuration(
            n,
            dict(by_number[n].params),
            by_number[n].value,
            {s: scores.get(n, {}).get(s) for s in used},
            standing.means.get(n),
            standing.dropped.get(n),
        )
        for n in chosen
    ]
    found.sort(key=lambda c: (-c.mean if c.mean is not None else math.inf, c.trial))
    base = next(c for c in found if c.trial == baseline)
    return Confirmation(list(rounds.seeds), used, found, base, standing, policy, reused(runs))


def confirmation_of(study: optuna.Study) -> Result | None:
    """The phase's result for ``study`` (None: the phase never planned anything, or no round
    has ended); a study confirmed before rounds is read as it was then."""
    sibling = find_sibling(study)
    spec = None if sibling is None else sibling.user_attrs.get(PLAN)
    if sibling is None or not spec:
        return None
    if "policy" not in spec:
        from search import confirm_legacy

        return confirm_legacy.summarise(study, sibling)
    return summarise(study, sibling)


def _comparison(c: racing.Comparison) -> dict[str, Any]:
    return {
        "trial": c.trial,
        "difference": c.difference,
        "interval": None if c.interval is None else list(c.interval),
        "significant": c.significant,
    }


def _pm(c: Configuration) -> str:
    return f"{_number(c.mean, 3)} ± {c.std:.3f}"


def _number(value: float | None, places: int = 4) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{places}f}"
