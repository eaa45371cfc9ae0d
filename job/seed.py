"""SEED=random resolved: a new seed for a new OUTPUT_DIR, the same one for a resumed run.

The seed belongs to the checkpoint's fingerprint, so a run stopped and restarted (a pod
rescheduled, a Job's retry) must draw the seed its checkpoint was written with, or it could
not resume. ``random`` therefore takes the seed of OUTPUT_DIR's checkpoint (its fingerprint,
read once by :func:`job.previous.claim`) and draws only when there is none (or none readable:
the checkpoint's own verification then reports it).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from typing import Any

from job.config import Config
from job.contract import CHECKPOINT
from job.events import log

RANDOM = "random"
SEED_BITS = 31  # a positive int32: any tool that takes a seed takes it


def resolve(cfg: Config, saved: Mapping[str, Any] | None) -> Config:
    """``cfg`` with SEED as a number: itself, the seed of ``saved`` (the fingerprint of the
    checkpoint the run resumes, None without one), or a new draw."""
    if cfg.seed != RANDOM:
        return cfg
    seed = _checkpoint_seed(saved)
    if seed is None:
        seed = secrets.randbits(SEED_BITS)
        log(f"seed: {seed}, drawn (SEED=random)")
    else:
        log(f"seed: {seed}, from {cfg.output_dir / CHECKPOINT} (SEED=random, resuming)")
    return dataclasses.replace(cfg, seed=seed)


def _checkpoint_seed(saved: Mapping[str, Any] | None) -> int | None:
    """The seed in a checkpoint's fingerprint ``saved``; None when there is none or it is not
    a seed (verifying the checkpoint is :func:`job.checkpoint.load_checkpoint`'s job)."""
    seed = (saved or {}).get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else None
