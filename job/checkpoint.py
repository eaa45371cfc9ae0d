"""The resumable checkpoint: saved atomically after every epoch, refused when foreign."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from job.contract import CHECKPOINT, atomic_write
from job.errors import ConfigError


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save a dict atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(output_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint in ``output_dir`` if there is one; refuse one from another configuration."""
    path = output_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say so instead of a traceback
        raise ConfigError(
            f"OUTPUT_DIR={str(output_dir)!r} holds an unreadable {CHECKPOINT} ({exc}); "
            "delete it or choose another OUTPUT_DIR."
        ) from None
    saved = state.get("fingerprint", {})
    if saved != fingerprint:
        diff = ", ".join(
            f"{k.upper()} {saved.get(k)!r} → {fingerprint.get(k)!r}"
            for k in sorted(set(saved) | set(fingerprint))
            if saved.get(k) != fingerprint.get(k)
        )
        raise ConfigError(
            f"OUTPUT_DIR={str(output_dir)!r} holds a checkpoint from a different configuration "
            f"({diff}); use a new OUTPUT_DIR or delete {CHECKPOINT} to start over."
        )
    return state
