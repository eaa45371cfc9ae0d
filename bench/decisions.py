"""The confirmation policy, simulated: ``python -m bench decisions --json FILE``. Studies drawn
from a noise model calibrated on measured runs are confirmed by today's policy (top K = 3 over
S = 3 seeds, the selection seed among them, paired t) and by :mod:`search.racing` (the search's
defaults, or --confirm K --confirm-seeds S); K, S, the drop level are swept. Figures in σ, a
run's seed noise beyond the seed's shared part. Docs: docs/benchmarks.md, "Decisions: …"."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from job.files import write_json
from search import options
from search.racing import Policy, refusal, standing

SIGMA, SEED_SHARE = 0.016, 1.6
"""σ in val_acc: the residual of the two-way fit of docs/search.md's confirmed real study (4
configurations × 3 seeds, 6 df), as docs/contract.md's seed noise; the seed effect every
configuration shares, in σ (0.026 there: SEED also draws the TRAIN_LIMIT/TEST_LIMIT subsets)."""
MU, TAU = 3.5, 1.0
"""A challenger's true gain over the baseline ~ N(MU, TAU²) in σ: the values whose top three of
15 reproduce the study's fresh-seed gains over its baseline (mean 4.4σ, spread 0.9σ)."""
TRIALS, EPOCHS, STUDY_EPOCHS = 16, 4, 42
"""That study: 16 trials (trial 0 the baseline) of 4 epochs, 42 epochs in all (11 pruned)."""
GAIN = 2.0  # σ: in the claim-rate scenario the best configuration beats the baseline by this
TODAY, MAX_SEEDS, DROP_LEVELS = Policy(3, 3), 6, (0.8, 0.9, 0.95)
SCENARIOS = ("calibrated", "gain", "null")
"""Gains ~ N(MU, TAU²); ~ N(0, TAU²) moved so that the best is the gain; all 0: no gain."""


class _Outcome(NamedTuple):
    """A study's confirmation: runs, the baseline's, the exported trial, its gain, a claim."""

    runs: int
    baseline_runs: int
    exported: int
    reported: float | None
    claim: bool


Confirm = Callable[[np.ndarray], _Outcome]


def _truth(rng: np.random.Generator, scenario: str, gain: float) -> np.ndarray:
    gains = rng.normal(MU if scenario == "calibrated" else 0.0, TAU, TRIALS - 1)
    if scenario == "gain":
        gains += gain - gains.max()
    return np.concatenate([[0.0], gains * (scenario != "null")])


def _table(rng: np.random.Generator, truth: np.ndarray) -> np.ndarray:
    """val_acc in σ of every configuration on the selection seed (column 0) and fresh seeds."""
    seeds = SEED_SHARE * rng.normal(size=1 + MAX_SEEDS)
    return truth[:, None] + seeds[None, :] + rng.normal(size=(TRIALS, 1 + MAX_SEEDS))


def _today(table: np.ndarray, policy: Policy) -> _Outcome:
    """search/confirm.py before the race: means and a paired t over S seeds, seed 0 included."""
    from scipy.special import stdtrit

    top = np.argsort(-table[:, 0], kind="stable")[: policy.configurations].tolist()
    confirmed = sorted({0, *top})
    values = table[confirmed, : policy.seeds]
    rival = max(range(1, len(confirmed)), key=lambda i: values[i].mean())
    diffs = values[rival] - values[0]
    half = stdtrit(policy.seeds - 1, 0.975) * diffs.std(ddof=1) / math.sqrt(policy.seeds)
    exported = confirmed[rival] if diffs.mean() > 0 else 0
    claim = exported != 0 and diffs.mean() - half > 0
    reported = diffs.mean() if exported else None
    runs = (policy.seeds - 1) * len(confirmed)  # seed 0's runs are the study's own
    return _Outcome(runs, policy.seeds - 1, exported, reported, claim)


def _race(table: np.ndarray, policy: Policy) -> _Outcome:
    """search.racing on fresh seeds only: the top K challengers by the selection seed."""
    top = (np.argsort(-table[1:, 0], kind="stable")[: policy.configurations] + 1).tolist()
    seeds = range(policy.seeds)
    values = {c: {s: float(table[c, 1 + s]) for s in seeds} for c in [0, *top]}
    found = standing(values, 0, seeds, policy)
    runs = sum(found.dropped.get(c, found.rounds) for c in values)
    reported = found.comparisons[found.winner].difference if found.winner != 0 else None
    return _Outcome(runs, found.rounds, found.winner, reported, found.claim)


def _scenario(confirm: Confirm, scenario: str, studies: int, seed: int, gain: float) -> dict:
    """Means over ``studies`` draws; study i's draw depends only on (seed, scenario, i)."""
    rows = []
    for i in range(studies):
        rng = np.random.default_rng([seed, SCENARIOS.index(scenario), i])
        truth = _truth(rng, scenario, gain)
        out = confirm(_table(rng, truth))
        bias = math.nan if out.reported is None else out.reported - truth[out.exported]
        regret = truth.max() - truth[out.exported]
        rows.append((out.runs, out.runs - out.baseline_runs, regret, out.claim, bias))
    a = np.array(rows, dtype=float)
    bias = float(a[~np.isnan(a[:, 4]), 4].mean()) if (~np.isnan(a[:, 4])).any() else math.nan
    names = ("runs", "runs_reused", "regret", "claim_rate")
    return {n: float(a[:, k].mean()) for k, n in enumerate(names)} | {"bias": bias}


def _evaluate(confirm: Confirm, studies: int, seed: int, gain: float) -> dict:
    """The issue's figures: costs, regret and bias as calibrated, claims at ``gain``, at 0."""
    found = {s: _scenario(confirm, s, studies, seed, gain) for s in SCENARIOS}
    cal = found["calibrated"]
    return {"extra_runs": cal["runs"], "extra_runs_baseline_reused": cal["runs_reused"],
            "extra_epochs_share": cal["runs"] * EPOCHS / STUDY_EPOCHS, "regret": cal["regret"],
            "claim_rate": found["gain"]["claim_rate"], "bias": cal["bias"],
            "false_claim_rate": found["null"]["claim_rate"], "scenarios": found}  # fmt: skip


def _goals(new: dict, today: dict) -> dict[str, bool]:
    """The goals for the new default (docs/benchmarks.md), each met or not."""
    return {"extra_runs": new["extra_runs"] <= 0.6 * today["extra_runs"],
            "false_claims": new["false_claim_rate"] <= 0.05, "bias": abs(new["bias"]) <= 0.25,
            "regret": new["regret"] <= today["regret"],
            "claim_rate": new["claim_rate"] >= today["claim_rate"]}  # fmt: skip


def _sweep(default: Policy, today: dict, args: argparse.Namespace) -> list[dict]:
    """Every K in 1..4 and S in 2..MAX_SEEDS, then the default's K and S at other drop levels."""
    grid = [Policy(k, s) for k in range(1, 5) for s in range(2, MAX_SEEDS + 1)]
    grid += [replace(default, drop_level=d) for d in DROP_LEVELS if d != default.drop_level]
    rows = []
    for p in grid:
        found = _evaluate(partial(_race, policy=p), args.sweep_studies, args.seed, args.gain)
        del found["scenarios"]
        row = {"K": p.configurations, "S": p.seeds, "drop_level": p.drop_level, **found}
        rows.append(row | {"goals": _goals(found, today)})
    return rows


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench decisions", description=__doc__)
    p.add_argument("--json", type=Path, required=True, help="write the results here")
    p.add_argument("--studies", type=int, default=10_000, help="studies per scenario")
    p.add_argument("--sweep-studies", type=int, default=2_000, help="the same, per sweep row")
    p.add_argument("--seed", type=int, default=0, help="the draws depend only on it")
    p.add_argument("--gain", type=float, default=GAIN, help="the claim-rate scenario's, in σ")
    p.add_argument("--confirm", type=int, default=options.default("run", "confirm"), help="new K")
    p.add_argument("--confirm-seeds", type=int, default=options.default("run", "confirm_seeds"))
    args = p.parse_args(argv)
    refused = refusal(args.confirm, args.confirm_seeds)
    if refused or min(args.studies, args.sweep_studies, args.confirm) < 1:
        p.error(refused or "--studies, --sweep-studies and --confirm take 1 or more")
    default = Policy(args.confirm, args.confirm_seeds)
    today = _evaluate(partial(_today, policy=TODAY), args.studies, args.seed, args.gain)
    new = _evaluate(partial(_race, policy=default), args.studies, args.seed, args.gain)
    calibration = dict(sigma=SIGMA, seed_share=SEED_SHARE, mu=MU, tau=TAU, trials=TRIALS,
                       epochs=EPOCHS, study_epochs=STUDY_EPOCHS, gain=args.gain)  # fmt: skip
    result = {
        "policies": {"today": today, "new": new},
        "new_policy": asdict(default),
        "goals": _goals(new, today),
        "calibration": calibration,
        "draws": {"studies": args.studies, "sweep_studies": args.sweep_studies, "seed": args.seed},
        "sweep": _sweep(default, today, args),
    }
    write_json(args.json, result)
    for name, found in (("today", today), ("new", new)):
        print(name, json.dumps({k: round(v, 3) for k, v in found.items() if k != "scenarios"}))
    return 0
