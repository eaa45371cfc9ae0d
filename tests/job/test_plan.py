"""What a run resolves once (job/plan.py) and the seed it takes from the checkpoint's
fingerprint, read once by the claim of OUTPUT_DIR (job/seed.py)."""

from __future__ import annotations

import pytest
import torch

from job import cpuinfo, seed
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


def test_a_plans_fingerprint_is_its_settings_and_its_resolved_precision() -> None:
    cfg = Config(max_lr=0.02, seed=9)
    plan = RunPlan(cfg, torch.device("cpu"), "bf16", 1, started=0.0)
    assert plan.fingerprint == cfg.fingerprint() | {"resolved_precision": "bf16"}
    assert plan.fingerprint["seed"] == 9


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_resolves_per_cpu_into_the_plan_its_reason_and_fingerprint(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: str
) -> None:
    # The CPU's flags stubbed: this machine's own decide nothing here.
    flags = frozenset({"avx512_bf16"} if native else {"avx2"})
    monkeypatch.setattr(cpuinfo, "flags", lambda fields=None: flags)
    cfg = Config(device="cpu", cpu_threads=torch.get_num_threads())
    plan = resolve(cfg, started=0.0)
    assert plan.precision == expected
    assert plan.precision_reason.startswith("auto: CPU with" if native else "auto: CPU without")
    assert plan.fingerprint["resolved_precision"] == expected
    assert plan.fingerprint["precision"] == "auto"  # the setting stays as it was set


def test_a_set_precision_is_its_own_reason() -> None:
    cfg = Config(device="cpu", precision="fp16", cpu_threads=torch.get_num_threads())
    plan = resolve(cfg, started=0.0)
    assert (plan.precision, plan.precision_reason) == ("fp16", "PRECISION=fp16 set")


def test_a_random_seed_is_the_checkpoints_or_a_new_draw() -> None:
    cfg = Config(seed=seed.RANDOM)
    assert seed.resolve(cfg, {"seed": 42, "max_lr": 0.01}).seed == 42
    drawn = seed.resolve(cfg, None).seed
    assert isinstance(drawn, int) and 0 <= drawn < 2**seed.SEED_BITS
    for unusable in ({}, {"seed": True}, {"seed": -1}, {"seed": "7"}):
        assert seed.resolve(cfg, unusable).seed != unusable.get("seed")


def test_an_explicit_seed_ignores_the_checkpoint() -> None:
    assert seed.resolve(Config(seed=5), {"seed": 42}).seed == 5
