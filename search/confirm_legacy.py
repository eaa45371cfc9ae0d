"""Studies confirmed before the race: read back as they were then (docs/search.md).

The phase before rounds re-ran the top configurations and the baseline on the study's own
seed and the next S − 1, every one on every seed, and compared the best mean with the baseline
by a paired Student t-interval. Its plan (the sibling's ``plan`` attribute) records no
``policy``; :func:`search.confirm.confirmation_of` hands such a study here, so ``search best``
and the dashboard note still read it, with the t quantile from scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from search import racing
from search.study.confirmation import complete, key

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
        from scipy import stats

        centre = statistics.fmean(diffs)
        df = len(diffs) - 1
        half = float(stats.t.ppf(0.975, df)) * statistics.stdev(diffs) / math.sqrt(len(diffs))
        return centre - half, centre + half

    def noise(self) -> float | None:
        """The pooled standard deviation of one run over seeds, across the configurations
        with two or more runs (root mean of their variances); None without any."""
        spread = [c.std**2 for c in self.configurations if len(c.measured) > 1]
        return math.sqrt(statistics.fmean(spread)) if spread else None

    def df(self) -> int:
        """The noise's degrees of freedom: each configuration's runs less one."""
        return sum(len(c.measured) - 1 for c in self.configurations if len(c.measured) > 1)

    @property
    def winner_trial(self) -> int | None:
        return None if self.winner is None else self.winner.trial

    def winner_summary(self) -> str:
        """How the exported configuration did, for best.env's header."""
        w = self.winner
        return "" if w is None else f"mean val_acc {w.mean:.4f} over {len(w.measured)} seeds"

    def margin(self) -> float | None:
        """PROMOTE_MARGIN from the pooled noise (:func:`search.racing.promote_margin`)."""
        noise = self.noise()
        return None if noise is None else racing.promote_margin(noise, self.df())

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

    def summary(self) -> str:
        """The verdict line as ``search best`` and the run's summary print it."""
        return f"confirmed over seeds {self.seeds}: {self.line()}"

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
    for t in sorted(complete(sibling), key=lambda t: t.number, reverse=True):
        if t.value is not None:
            runs[key(t.params)] = t.value  # the first completed run of a key wins
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
