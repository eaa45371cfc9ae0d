"""What a run resolves once (job/plan.py) and the seed it takes from the checkpoint's
fingerprint, read once by the claim of OUTPUT_DIR (job/seed.py)."""

from __future__ import annotations

import torch

from job import seed
from job.config import Config
from job.plan import RunPlan, resolve


def test_a_plan_resolves_the_device_precision_and_threads_once() -> None:
    threads = torch.get_num_threads()  # the pools this process already has: nothing resized
    cfg = Config(device="cpu", precision="fp32", cpu_threads=threads, seed=3)
    plan = resolve(cfg, started=1.5)
    assert (plan.device, plan.precision, plan.cpu_threads) == (torch.device("cpu"), "fp32", threads)
    assert plan.cfg is cfg and plan.started == 1.5
    assert plan.resolved() == {
        "resolved_device": "cpu",
        "resolved_precision": "fp32",
        "resolved_cpu_threads": threads,
    }


def test_a_plans_fingerprint_is_its_settings_fingerprint() -> None:
    cfg = Config(max_lr=0.02, seed=9)
    plan = RunPlan(cfg, torch.device("cpu"), "fp32", 1, started=0.0)
    assert plan.fingerprint == cfg.fingerprint() and plan.fingerprint["seed"] == 9


def test_a_random_seed_is_the_checkpoints_or_a_new_draw() -> None:
    cfg = Config(seed=seed.RANDOM)
    assert seed.resolve(cfg, {"seed": 42, "max_lr": 0.01}).seed == 42
    drawn = seed.resolve(cfg, None).seed
    assert isinstance(drawn, int) and 0 <= drawn < 2**seed.SEED_BITS
    for unusable in ({}, {"seed": True}, {"seed": -1}, {"seed": "7"}):
        assert seed.resolve(cfg, unusable).seed != unusable.get("seed")


def test_an_explicit_seed_ignores_the_checkpoint() -> None:
    assert seed.resolve(Config(seed=5), {"seed": 42}).seed == 5
