"""The race's statistics (search/racing.py) on constructed data: the two-way model, its
degrees of freedom, dropping, settling, unbalanced runs, refusals and PROMOTE_MARGIN."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from search.racing import Policy, promote_margin, refusal, standing

BASELINE = 0


def _table(effects: dict[int, float], seeds: int, noise: float, seed_effects=None, rng=0):
    """values[config][seed] = effect + seed effect + noise, on seeds 0..seeds-1."""
    draw = np.random.default_rng(rng)
    shared = seed_effects if seed_effects is not None else draw.normal(0, 0.03, seeds)
    return {
        c: {s: e + float(shared[s]) + float(draw.normal(0, noise)) for s in range(seeds)}
        for c, e in effects.items()
    }


NEVER_DROP = 0.999999
"""A drop level at which nothing in these tables is ever clearly behind."""


@pytest.mark.parametrize("hard", [0.0, -0.05, -0.2])
def test_a_hard_seed_counts_against_every_configuration_alike(hard: float) -> None:
    # Trial 2 missed the hard seed 1, so its raw mean escapes it; the model's difference
    # does not: without noise it is the true effect difference however hard the seed.
    values = _table({0: 0.40, 1: 0.45, 2: 0.43}, 3, 0.0, seed_effects=[0.0, hard, 0.01])
    del values[2][1]
    found = standing(values, BASELINE, range(3), Policy(2, 3, drop_level=NEVER_DROP))
    assert found.comparisons[2].difference == pytest.approx(0.03)
    assert found.comparisons[1].difference == pytest.approx(0.05)
    assert found.noise == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    ("configs", "seeds", "missing", "df"),
    [(2, 2, 0, 1), (4, 2, 0, 3), (4, 3, 0, 6), (3, 4, 0, 6), (4, 3, 1, 5), (4, 3, 2, 4)],
)
def test_degrees_of_freedom_are_runs_less_configurations_less_seeds_plus_one(
    configs: int, seeds: int, missing: int, df: int
) -> None:
    values = _table({c: 0.4 for c in range(configs)}, seeds, 0.01)
    for c in range(1, 1 + missing):  # failed runs: absent, on the first seed
        del values[c][0]
    found = standing(values, BASELINE, range(seeds), Policy(configs - 1, seeds, 0.95, NEVER_DROP))
    assert found.rounds == seeds
    assert found.df == df == seeds * configs - missing - configs - seeds + 1


def test_noise_is_the_residual_of_the_two_way_model() -> None:
    values = _table({0: 0.40, 1: 0.45, 2: 0.43, 3: 0.41}, 3, 0.02)
    y = np.array([[values[c][s] for s in range(3)] for c in range(4)])
    residual = y - y.mean(1, keepdims=True) - y.mean(0, keepdims=True) + y.mean()
    found = standing(values, BASELINE, range(3), Policy(3, 3, drop_level=NEVER_DROP))
    assert found.noise == pytest.approx(math.sqrt((residual**2).sum() / 6))
    assert found.means == {c: pytest.approx(y[c].mean()) for c in range(4)}


@pytest.mark.parametrize(("challengers", "seeds", "level"), [(3, 3, 0.95), (2, 4, 0.9)])
def test_intervals_are_bonferroni_over_challengers_and_looks(
    challengers: int, seeds: int, level: float
) -> None:
    values = _table({c: 0.4 for c in range(challengers + 1)}, seeds, 0.02)
    found = standing(values, BASELINE, range(seeds), Policy(challengers, seeds, level, NEVER_DROP))
    assert found.noise is not None and found.df > 0
    t = stats.t.ppf(1 - (1 - level) / (challengers * (seeds - 1)), found.df)
    half = t * found.noise * math.sqrt(2 / seeds)
    for comparison in found.comparisons.values():
        assert comparison.interval is not None
        low, high = comparison.interval
        assert (high - low) / 2 == pytest.approx(half)
        assert comparison.significant == (low > 0 or high < 0)


def test_a_configuration_clearly_behind_is_dropped_after_the_round_that_shows_it() -> None:
    values = _table({0: 0.40, 1: 0.46, 2: 0.46, 3: 0.20}, 4, 0.005)
    two_rounds = {c: {s: v[s] for s in (0, 1)} for c, v in values.items()}
    found = standing(two_rounds, BASELINE, range(4), Policy(3, 4))
    assert (found.dropped, found.contending, found.settled) == ({3: 2}, (0, 1, 2), False)
    found = standing(values, BASELINE, range(4), Policy(3, 4))
    assert found.dropped == {3: 2}
    assert found.means[3] == pytest.approx((values[3][0] + values[3][1]) / 2)  # its 2 rounds


def test_the_baseline_is_never_dropped() -> None:
    values = _table({0: 0.10, 1: 0.45, 2: 0.46}, 4, 0.005)
    found = standing(values, BASELINE, range(4), Policy(2, 4))
    assert BASELINE not in found.dropped


def test_runs_a_dropped_configuration_made_later_are_not_counted() -> None:
    values = _table({0: 0.40, 1: 0.46, 2: 0.46, 3: 0.20}, 4, 0.005)
    raced = {c: dict(v) for c, v in values.items()}
    for s in (2, 3):
        del raced[3][s]  # what the race ran: trial 3 dropped after round 2
    policy = Policy(3, 4)
    assert standing(values, BASELINE, range(4), policy) == standing(raced, 0, range(4), policy)


def test_one_challenger_left_that_beats_the_baseline_settles_the_race() -> None:
    values = _table({0: 0.40, 1: 0.55, 2: 0.30}, 5, 0.005)
    found = standing(values, BASELINE, range(5), Policy(2, 5))
    assert (found.settled, found.rounds, found.contending) == (True, 2, ())
    assert (found.winner, found.claim, found.dropped) == (1, True, {2: 2})


def test_close_challengers_race_on_until_the_seeds_are_spent() -> None:
    values = _table({0: 0.40, 1: 0.41, 2: 0.41}, 4, 0.02)
    for rounds in (2, 3):
        partial = {c: {s: v[s] for s in range(rounds)} for c, v in values.items()}
        found = standing(partial, BASELINE, range(4), Policy(2, 4))
        assert (found.rounds, found.settled, found.contending) == (rounds, False, (0, 1, 2))
    found = standing(values, BASELINE, range(4), Policy(2, 4))
    assert (found.rounds, found.settled, found.contending) == (4, True, ())


def test_the_baseline_is_exported_when_no_challenger_beats_it() -> None:
    values = _table({0: 0.45, 1: 0.40, 2: 0.41}, 3, 0.02)
    found = standing(values, BASELINE, range(3), Policy(2, 3))
    assert (found.winner, found.claim) == (BASELINE, False)


def test_reused_baseline_runs_do_not_make_a_round_run() -> None:
    values = {0: {0: 0.40, 1: 0.41, 2: 0.39}, 1: {0: 0.45}, 2: {0: 0.46}}
    found = standing(values, BASELINE, range(3), Policy(2, 3))
    assert (found.rounds, found.df, found.noise, found.settled) == (1, 0, None, False)
    assert found.contending == (0, 1, 2)
    assert all(c.interval is None and not c.significant for c in found.comparisons.values())


def test_no_run_yet_leaves_every_configuration_contending() -> None:
    found = standing({0: {}, 1: {}, 2: {}}, BASELINE, range(3), Policy(2, 3))
    assert (found.rounds, found.contending, found.winner, found.claim) == (0, (0, 1, 2), 0, False)


def test_a_configuration_without_any_run_is_not_compared() -> None:
    values = _table({0: 0.40, 1: 0.45}, 3, 0.01)
    values[2] = {}
    found = standing(values, BASELINE, range(3), Policy(2, 3))
    assert set(found.comparisons) == {1} and 2 not in found.means


@pytest.mark.parametrize("configurations", [1, 3])
def test_one_fresh_seed_is_refused_in_a_sentence_naming_both_options(configurations: int) -> None:
    sentence = refusal(configurations, 1)
    assert sentence is not None and sentence.endswith(".") and sentence.count(". ") == 0
    assert "--confirm-seeds 2" in sentence and f"--confirm {configurations}" in sentence


@pytest.mark.parametrize(("configurations", "seeds"), [(1, 2), (3, 3), (4, 6), (0, 1)])
def test_values_that_leave_degrees_of_freedom_are_accepted(configurations: int, seeds: int) -> None:
    assert refusal(configurations, seeds) is None


@pytest.mark.parametrize(("noise", "df"), [(0.03, 6), (0.016, 3), (0.01, 40)])
def test_promote_margin_is_the_one_sided_t_bound_of_two_runs(noise: float, df: int) -> None:
    expected = round(stats.t.ppf(0.95, df) * math.sqrt(2) * noise, 4)
    assert promote_margin(noise, df) == expected


def test_dropping_does_not_shrink_the_family_the_claim_is_adjusted_for() -> None:
    # Trial 3 is dropped after round 2; round 3's bounds still split the error over the 3
    # challengers the race started with (a family chosen by the data would not hold its level).
    values = _table({0: 0.40, 1: 0.46, 2: 0.46, 3: 0.20}, 4, 0.005)
    three_rounds = {c: {s: v[s] for s in (0, 1, 2)} for c, v in values.items()}
    found = standing(three_rounds, BASELINE, range(4), Policy(3, 4))
    assert found.dropped == {3: 2} and found.rounds == 3
    t = stats.t.ppf(1 - 0.05 / (3 * 3), found.df)
    assert f"Bonferroni over 3 challenger(s) × 3 look(s): t({found.df}) = {t:.2f}" in found.method
