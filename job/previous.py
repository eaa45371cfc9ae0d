"""One OUTPUT_DIR, one run: a finished run's outputs set aside when a run of another
configuration starts in its folder (docs/contract.md: one OUTPUT_DIR, one run).

A finished run (its ``metrics.json`` present) whose checkpoint fingerprint differs from the new
run's is moved aside file by file with ``rename`` — in one volume, so nothing is copied and no
file is ever half-written — into ``OUTPUT_DIR/previous/.moving/``, ``metrics.json`` last, and
that folder is then renamed ``previous/<UTC time>-<fingerprint sha256 prefix>/``. A move cut
short (SIGKILL, a power cut) is finished by the next run, whatever its configuration, before
anything else. An unfinished run of another configuration is refused instead (exit 2): its
checkpoint is the only way to finish it, and resuming it with other settings would mix two
recipes in one model.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from job.checkpoint import differences, foreign, read_fingerprint
from job.config import Config
from job.contract import METRICS_JSON, OUTPUTS, PREVIOUS
from job.errors import ConfigError
from job.events import log
from job.resources import is_no_space
from job.seed import RANDOM

STAGING = ".moving"
"""The folder of ``previous/`` that a finished run's files are moved into before it gets its
name; present only while a move is under way or was cut short."""


def claim(cfg: Config) -> dict[str, Any] | None:
    """Make ``cfg.output_dir`` ready for this run: finish a move cut short, set a finished run
    of another configuration aside, refuse an unfinished one.

    Return the fingerprint of the checkpoint this run finds there, read once for the run
    (:func:`job.seed.resolve` takes its seed): None when there is none, it cannot be read, or
    its run was set aside.
    """
    output_dir = cfg.output_dir
    try:
        if (output_dir / PREVIOUS / STAGING).is_dir():
            moved = _set_aside(output_dir)
            log(f"output: finished setting a previous run aside in {moved}")
        saved = read_fingerprint(output_dir)
        if saved is None:
            return None
        diff = differences(saved, _comparable(cfg, saved))
        if not diff:
            return saved  # the same configuration: the run resumes (or ends at once)
        if not (output_dir / METRICS_JSON).is_file():
            raise foreign(output_dir, diff)
        moved = _set_aside(output_dir, saved)
    except OSError as exc:
        if is_no_space(exc):
            raise  # a full volume: the job's disk fault (exit 5) names it
        raise ConfigError(
            f"OUTPUT_DIR={str(output_dir)!r} holds a finished run that cannot be moved aside "
            f"({exc.strerror}); make the folder writable or choose another OUTPUT_DIR."
        ) from None
    log(
        f"output: {output_dir} held a finished run of another configuration "
        f"({', '.join(diff)}); its outputs are now in {moved}"
    )
    return None


def _comparable(cfg: Config, saved: dict[str, Any]) -> dict[str, Any]:
    """``cfg``'s fingerprint as a checkpoint would hold it; SEED=random takes the checkpoint's
    seed, as a resumed run does (job.seed), so only the other settings can differ. The bare
    settings: the arithmetic PRECISION resolves to needs the device, resolved after the claim,
    so :func:`job.checkpoint.differences` lets ``auto`` pass here and
    :func:`job.checkpoint.load_checkpoint` compares the resolved one."""
    fingerprint = cfg.fingerprint()
    if cfg.seed == RANDOM and "seed" in saved:
        fingerprint["seed"] = saved["seed"]
    return fingerprint


def _set_aside(output_dir: Path, saved: dict[str, Any] | None = None) -> Path:
    """Move the run's outputs into ``previous/.moving`` (metrics.json last: while it stays,
    the run still counts as finished), then give that folder its name; return it.

    The name holds the digest of ``saved``, the fingerprint of the run's checkpoint, already
    read by the caller; a move cut short reads it from the checkpoint it moved.
    """
    previous = output_dir / PREVIOUS
    staging = previous / STAGING
    staging.mkdir(parents=True, exist_ok=True)
    for name in sorted(OUTPUTS, key=lambda n: n == METRICS_JSON):
        if (output_dir / name).exists():
            os.replace(output_dir / name, staging / name)
    _fsync_dir(staging)
    _fsync_dir(output_dir)
    if saved is None:
        saved = read_fingerprint(staging)
    stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{_digest(saved)}"
    target, n = previous / stamp, 1
    while target.exists():
        n += 1
        target = previous / f"{stamp}-{n}"
    staging.rename(target)
    _fsync_dir(previous)
    return target


def _digest(saved: dict[str, Any] | None) -> str:
    """The first 12 hex digits of the sha256 of a checkpoint's fingerprint ``saved``."""
    if saved is None:
        return "unknown"
    text = json.dumps(saved, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
