"""Atomic files and the resumable checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from job.errors import ConfigError

CHECKPOINT = "checkpoint.pt"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write`` into a temp file beside it, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        # mkstemp creates 0600; give the file the mode open() would, so a host user can read
        # what a container wrote to a mounted volume.
        os.fchmod(fd, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_file_mode() -> int:
    """0666 less the process umask: the mode a plainly created file gets."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


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
