"""The confirmation race's statistics: which configurations run the next round, and the verdict.

Pure statistics, no Optuna: the phase's driver hands :func:`standing` the ``val_acc`` of every
fresh-seed run so far and plans what it says. The rounds are replayed from the runs alone, so
which configurations ran in round *r*, and when each was dropped, needs no record of its own.

The model is two-way and additive, ``val_acc = configuration effect + seed effect + error``,
fitted by least squares over every fresh run in the race (so a hard seed counts against every
configuration alike, and a failed run only leaves the data unbalanced). Its residual standard
deviation is the pooled noise, with ``runs - configurations - seeds + 1`` degrees of freedom.

Multiplicity: a claim ("the winner beats the baseline") is one-sided, so each comparison with
the baseline is bounded one-sided at ``1 - (1 - level) / (K × (S - 1))``, a Bonferroni split over
the K challengers the race started with and the S - 1 looks that can settle it (rounds 2..S):
whatever look settles the race, the chance of any false claim is at most ``1 - level``. The
interval shown is the two such bounds, a two-sided interval at ``1 - 2 (1 - level) / (K (S -
1))``. Dropping a configuration never makes a claim and needs no adjustment: it is a one-sided
t bound at ``drop_level`` of the configuration behind the leader.

scipy is imported inside the functions so that ``python -m search --help`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

DROP_LEVEL = 0.9
"""One-sided confidence that a configuration is behind the leader before it is dropped: a
wrong drop costs regret, never a false claim (bench/decisions.py sweeps it)."""


@dataclass(frozen=True)
class Policy:
    """How the race runs: ``configurations`` (K) are raced beside the baseline over at most
    ``seeds`` (S) fresh seeds, one per round."""

    configurations: int
    seeds: int
    level: float = 0.95
    """The claim's confidence: one-sided, family-wise over the configurations and the looks."""
    drop_level: float = DROP_LEVEL


def refusal(configurations: int, seeds: int) -> str | None:
    """One sentence why ``configurations`` (K ≥ 1) and ``seeds`` (S) leave the verdict no
    degrees of freedom, else None (K 0 turns the phase off: nothing to refuse)."""
    if configurations < 1 or seeds >= 2:
        return None
    return (
        f"--confirm {configurations} with --confirm-seeds {seeds} leaves the verdict no degrees "
        f"of freedom (the two-way model of {configurations + 1} configurations over {seeds} "
        f"fresh seed has {configurations} × {seeds - 1} = 0 residual degrees of freedom): "
        "pass --confirm-seeds 2 or more, or --confirm 0 to turn the phase off."
    )


@dataclass(frozen=True)
class Comparison:
    """A challenger against the baseline, on fresh seeds only, from the two-way model."""

    trial: int
    difference: float
    interval: tuple[float, float] | None
    significant: bool


@dataclass(frozen=True)
class Standing:
    """Where the race stands after the rounds its runs show (see the module's docstring)."""

    rounds: int
    means: dict[int, float]
    noise: float | None
    df: int
    comparisons: dict[int, Comparison]
    contending: tuple[int, ...]
    dropped: dict[int, int]
    settled: bool
    winner: int
    claim: bool
    method: str


@dataclass(frozen=True)
class _Fit:
    """The least-squares fit of one look: effects per configuration (only their differences
    mean anything), the unscaled covariance, the row-space projector, the noise and df."""

    configs: tuple[int, ...]
    beta: np.ndarray
    cov: np.ndarray
    projector: np.ndarray
    noise: float | None
    df: int
    runs: int

    def contrast(self, a: int, b: int) -> tuple[float, float] | None:
        """Effect of ``a`` minus that of ``b`` and its standard error (nan without noise);
        None when the runs cannot tell them apart (no seed connects them)."""
        import numpy as np

        c = np.zeros(len(self.beta))
        c[1 + self.configs.index(a)], c[1 + self.configs.index(b)] = 1.0, -1.0
        if float(np.abs(c @ self.projector - c).max()) > 1e-8:
            return None
        se = math.nan if self.noise is None else self.noise * math.sqrt(max(c @ self.cov @ c, 0))
        return float(c @ self.beta), se


def _fit(runs: Mapping[int, Mapping[int, float]]) -> _Fit:
    """Least squares of ``val_acc`` on intercept + configuration + seed indicators (over-
    parametrised: the pseudo-inverse keeps only what the runs can estimate)."""
    import numpy as np

    configs = tuple(sorted(c for c in runs if runs[c]))
    seeds = sorted({s for c in configs for s in runs[c]})
    cells = [(i, seeds.index(s), v) for i, c in enumerate(configs) for s, v in runs[c].items()]
    x = np.zeros((len(cells), 1 + len(configs) + len(seeds)))
    x[:, 0] = 1.0
    for row, (i, j, _) in enumerate(cells):
        x[row, 1 + i] = x[row, 1 + len(configs) + j] = 1.0
    target = np.array([v for _, _, v in cells])
    u, singular, vt = np.linalg.svd(x, full_matrices=False)
    keep = singular > singular[0] * 1e-10 * max(x.shape)
    pinv = (vt[keep].T / singular[keep]) @ u[:, keep].T
    beta = pinv @ target
    df = len(cells) - int(keep.sum())
    residual = target - x @ beta
    noise = math.sqrt(float(residual @ residual) / df) if df > 0 else None
    return _Fit(configs, beta, pinv @ pinv.T, vt[keep].T @ vt[keep], noise, df, len(cells))


def _quantile(p: float, df: int) -> float:
    from scipy.special import stdtrit

    return float(stdtrit(df, p))


@dataclass(frozen=True)
class _Look:
    """One look's comparisons with the baseline and the critical value behind them."""

    fit: _Fit
    comparisons: dict[int, Comparison]
    family: int
    critical: float | None


def _look(fit: _Fit, baseline: int, family: int, policy: Policy) -> _Look:
    """Every challenger's comparison with the baseline, each bound one-sided at ``1 - (1 -
    level) / (family × looks)``: the union bound over every challenger the race started with
    and every look it may make, fixed in advance so that dropping cannot shrink it."""
    looks = max(policy.seeds - 1, 1)
    alpha = (1 - policy.level) / (family * looks)
    critical = None if fit.df < 1 else _quantile(1 - alpha, fit.df)
    found: dict[int, Comparison] = {}
    if baseline not in fit.configs:
        return _Look(fit, found, family, critical)
    for c in fit.configs:
        estimate = None if c == baseline else fit.contrast(c, baseline)
        if estimate is None:
            continue
        difference, se = estimate
        if critical is None:
            found[c] = Comparison(c, difference, None, False)
            continue
        low, high = difference - critical * se, difference + critical * se
        found[c] = Comparison(c, difference, (low, high), low > 0 or high < 0)
    return _Look(fit, found, family, critical)


def _behind(fit: _Fit, contending: Sequence[int], baseline: int, level: float) -> list[int]:
    """The challengers whose one-sided ``level`` upper bound against the leader (the
    contending configuration of the largest effect) is below zero."""
    present = [c for c in contending if c in fit.configs]
    if fit.df < 1 or len(present) < 2:
        return []
    reference = present[0]
    effect = {c: (fit.contrast(c, reference) or (-math.inf, 0.0))[0] for c in present}
    leader = max(present, key=lambda c: (effect[c], c == baseline))
    q = _quantile(level, fit.df)
    out = []
    for c in present:
        estimate = None if c in (leader, baseline) else fit.contrast(c, leader)
        if estimate is not None and estimate[0] + q * estimate[1] < 0:
            out.append(c)
    return out


def _in_race(
    values: Mapping[int, Mapping[int, float]],
    configs: Sequence[int],
    seeds: Sequence[int],
    dropped: Mapping[int, int],
) -> dict[int, dict[int, float]]:
    """The runs a look sees: each configuration's on the seeds of the rounds it raced."""
    out: dict[int, dict[int, float]] = {}
    for c in configs:
        raced = seeds[: dropped.get(c, len(seeds))]
        out[c] = {s: float(v) for s, v in values.get(c, {}).items() if s in raced}
    return out


def _settled(look: _Look, challengers: Sequence[int]) -> bool:
    """No challenger left, or one left whose comparison with the baseline is decided."""
    if not challengers:
        return True
    only = look.comparisons.get(challengers[0]) if len(challengers) == 1 else None
    return only is not None and only.significant


def standing(
    values: Mapping[int, Mapping[int, float]],
    baseline: int,
    seeds: Sequence[int],
    policy: Policy,
) -> Standing:
    """Replay the race over the runs given (``values[trial][seed]``, fresh seeds only, reused
    baseline runs included, failed runs absent; ``seeds`` in round order). Call it when every
    run of the latest round has finished: a round counts as run once a challenger racing in
    it has a run on its seed."""
    configs = sorted(set(values) | {baseline})
    contending, dropped = list(configs), dict[int, int]()
    rounds, look, settled = 0, None, False
    for r, seed in enumerate(seeds[: policy.seeds], start=1):
        if not any(seed in values.get(c, {}) for c in contending if c != baseline):
            break
        rounds = r
        fit = _fit(_in_race(values, configs, seeds[:r], dropped))
        look = _look(fit, baseline, max(len(configs) - 1, 1), policy)
        for c in _behind(fit, contending, baseline, policy.drop_level) if r < policy.seeds else ():
            dropped[c] = r  # at the last round nothing is left to save: none is dropped
        contending = [c for c in contending if c not in dropped]
        settled = r >= policy.seeds or _settled(look, [c for c in contending if c != baseline])
        if settled:
            break
    return _standing(values, baseline, seeds, policy, dropped, contending, rounds, look, settled)


def _standing(
    values: Mapping[int, Mapping[int, float]],
    baseline: int,
    seeds: Sequence[int],
    policy: Policy,
    dropped: dict[int, int],
    contending: list[int],
    rounds: int,
    look: _Look | None,
    settled: bool,
) -> Standing:
    """The Standing of the last look (``look`` None: no round has run yet)."""
    configs = sorted(set(values) | {baseline})
    runs = _in_race(values, configs, seeds[:rounds], dropped)
    means = {c: math.fsum(v.values()) / len(v) for c, v in runs.items() if v}
    comparisons = {} if look is None else look.comparisons
    finalists = [c for c in contending if c != baseline and c in means]
    winner = _winner(finalists, baseline, means, comparisons)
    best = comparisons.get(winner)
    return Standing(
        rounds=rounds,
        means=means,
        noise=None if look is None else look.fit.noise,
        df=0 if look is None else look.fit.df,
        comparisons=comparisons,
        contending=() if settled else tuple(contending),
        dropped=dropped,
        settled=settled,
        winner=winner,
        claim=winner != baseline and best is not None and best.significant and best.difference > 0,
        method=_method(look, looks=max(policy.seeds - 1, 1)),
    )


def _winner(
    finalists: Sequence[int],
    baseline: int,
    means: Mapping[int, float],
    comparisons: Mapping[int, Comparison],
) -> int:
    """The best finalist by its model difference with the baseline when that is positive;
    without the baseline's runs, the best finalist by its mean; else the baseline."""
    if baseline not in means:
        return max(finalists, key=lambda c: means[c], default=baseline)
    compared = [c for c in finalists if c in comparisons]
    best = max(compared, key=lambda c: comparisons[c].difference, default=None)
    return best if best is not None and comparisons[best].difference > 0 else baseline


def _method(look: _Look | None, looks: int) -> str:
    """How the noise was pooled and how multiplicity is controlled, in one line."""
    if look is None:
        return "no round has run yet."
    fit = look.fit
    text = (
        f"two-way least squares (configuration + seed) over {fit.runs} fresh runs, "
        f"{fit.df} residual df"
    )
    if look.critical is None:
        return text + ": no noise estimate yet, so no interval."
    return (
        f"{text}; one-sided bounds, Bonferroni over {look.family} challenger(s) × {looks} "
        f"look(s): t({fit.df}) = {look.critical:.2f}."
    )


def promote_margin(noise: float, df: int) -> float:
    """``PROMOTE_MARGIN``: the one-sided 95 % bound of the difference of two single-seed runs
    of equally good recipes, t(0.95, df) × √2 × ``noise``, rounded to 4 decimals."""
    return round(_quantile(0.95, df) * math.sqrt(2) * noise, 4)
