"""The resumable checkpoint: checksummed, saved atomically after every epoch, verified before
resume, refused when damaged or foreign.

``checkpoint.pt`` is what ``torch.save`` writes (a zip archive, so ``torch.load`` still reads
it) with the sha256 of those bytes in the archive's comment: ``resnet-job sha256 <64 hex>``.
Before resuming, the file's bytes are checked against it; a file without it or not matching
— truncated, a flipped bit, written by another program or by a version without checksums —
is refused before torch reads any of it, so a damaged checkpoint is never trained from
(docs/contract.md: faults).

Every tensor is saved on the CPU (:func:`job.portable.on_cpu`), so the file loads on any
machine. :class:`CheckpointWriter` takes the state at once and writes it in the background:
at full width a write costs a sizeable part of a GPU epoch (docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import torch

from job.contract import CHECKPOINT, RESOLVED_PRECISION
from job.errors import ConfigError
from job.files import atomic_write
from job.portable import on_cpu

if TYPE_CHECKING:
    from job.model import ModelInfo

__all__ = [
    "CHECKPOINT",
    "COMMENT",
    "RESOLVED_PRECISION",
    "CheckpointWriter",
    "check_model_info",
    "differences",
    "foreign",
    "load_checkpoint",
    "read_fingerprint",
    "save_state",
]

COMMENT = b"resnet-job sha256 "
"""How the archive comment that carries the checksum starts; 64 hex digits follow."""
_TRAILER = len(COMMENT) + 64  # bytes: the comment
_EOCD = b"PK\x05\x06"  # a zip's end-of-central-directory record, 22 bytes when uncommented
_EOCD_SIZE = 22


class _Hashing:
    """A file that hashes what is written through it and keeps its last bytes."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.tail = b""

    def write(self, data: bytes) -> int:
        written = self._f.write(data)
        self.sha256.update(data)
        self.tail = (self.tail + bytes(data[-_EOCD_SIZE:]))[-_EOCD_SIZE:]
        return written

    def flush(self) -> None:
        self._f.flush()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, every tensor on the CPU, with the sha256 of its
    bytes in the comment.

    Streamed to the file and hashed on the way, so a checkpoint needs no second copy in
    memory.
    """
    state = on_cpu(state)

    def write(f: IO[bytes]) -> None:
        hashing = _Hashing(f)
        torch.save(state, cast(IO[bytes], hashing))
        if hashing.tail[:4] != _EOCD or hashing.tail[-2:] != b"\0\0":
            raise RuntimeError("torch.save wrote no uncommented zip archive; cannot checksum it")
        comment = COMMENT + hashing.sha256.hexdigest().encode()
        # Replace the archive's comment length (the record's last two bytes), add the comment.
        f.seek(-2, os.SEEK_END)
        f.write(len(comment).to_bytes(2, "little") + comment)

    atomic_write(path, write)


class CheckpointWriter:
    """Writes a run's checkpoints to ``path`` without stalling its training.

    :meth:`write` copies the state to the CPU before it returns, so the checkpoint holds
    exactly the state of that moment however training changes it next; serializing, hashing,
    fsync and the rename then run in a background thread. One write at a time: the next
    :meth:`write` first waits for the last one. :meth:`wait` returns once the last write is
    on disk and raises what it raised (a full volume's ``OSError``): call it before the run's
    final outputs and before exiting on SIGTERM (exit 143 promises the checkpoint).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, state: dict[str, Any]) -> None:
        """Take ``state`` (live tensors on any device) now; write it in the background."""
        self.wait()
        snapshot = on_cpu(state, snapshot=True)
        # Not a daemon: an exit while it runs (an error, exit_now) joins it, so a write that
        # began is finished rather than cut off (a cut one would leave the previous file).
        self._thread = threading.Thread(
            target=self._save, args=(snapshot,), name="checkpoint-writer"
        )
        self._thread.start()

    def wait(self) -> None:
        """Return once the last write is on disk; raise its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _save(self, snapshot: dict[str, Any]) -> None:
        try:
            save_state(self.path, snapshot)
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc


def _damage(data: bytes) -> str | None:
    """Why ``data`` is not a whole checkpoint, or None when it matches its checksum."""
    trailer = data[-_TRAILER:]
    eocd = len(data) - _TRAILER - _EOCD_SIZE
    if not trailer.startswith(COMMENT) or eocd < 0 or data[eocd : eocd + 4] != _EOCD:
        if data[-_EOCD_SIZE:][:4] == _EOCD:
            return "it has no checksum: an older version of resnet-job wrote it"
        return "it does not end with its checksum: truncated or not a checkpoint"
    digest = hashlib.sha256(memoryview(data)[: -_TRAILER - 2])
    digest.update(b"\0\0")  # the comment length torch.save wrote, which the digest covers
    if digest.hexdigest().encode() != trailer[len(COMMENT) :]:
        return "its contents do not match their sha256: corrupted on disk"
    return None


def load_checkpoint(output_dir: Path, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint in ``output_dir`` if there is one, verified against its checksum.

    A damaged, unreadable or foreign checkpoint, or one from another configuration, is refused
    with a ConfigError (exit 2) saying what to do; it is never loaded.
    """
    path = output_dir / CHECKPOINT
    if not path.is_file():
        return None
    where = f"OUTPUT_DIR={str(output_dir)!r}"
    advice = f"it was not used: delete {CHECKPOINT} to start over, or point OUTPUT_DIR elsewhere"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{where} holds a {CHECKPOINT} that cannot be read ({exc.strerror}); {advice}."
        ) from None
    damage = _damage(data)
    state: Any = None
    if damage is None:
        try:  # the very bytes just verified, not a second read of the file
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # checksummed yet unloadable: a foreign payload
            damage = f"its contents cannot be loaded ({type(exc).__name__})"
        else:
            if not isinstance(state, dict):
                damage = "its contents are not a checkpoint"
    if damage is not None:
        kind = "an unverifiable" if "no checksum" in damage else "a damaged"
        raise ConfigError(f"{where} holds {kind} {CHECKPOINT} ({damage}); {advice}.")
    saved = state.get("fingerprint", {})
    diff = differences(saved, fingerprint)
    if diff:
        raise foreign(output_dir, diff)
    refusal = _precision_refusal(output_dir, saved, fingerprint)
    if refusal is not None:
        raise refusal
    return state


def read_fingerprint(output_dir: Path) -> dict[str, Any] | None:
    """The fingerprint ``output_dir``'s checkpoint was written with, read without verifying
    the checkpoint; None when there is none or it cannot be read (verifying it is
    :func:`load_checkpoint`'s job)."""
    path = output_dir / CHECKPOINT
    if not path.is_file():
        return None
    try:
        # mmap: only the pickled dict is read, not the weights behind it.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        fingerprint = state["fingerprint"]
    except Exception:  # damaged or foreign: load_checkpoint says so when the run loads it
        return None
    return fingerprint if isinstance(fingerprint, dict) else None


def differences(saved: dict[str, Any], fingerprint: dict[str, Any]) -> list[str]:
    """Each setting in which ``fingerprint`` differs from a checkpoint's ``saved`` one, as
    ``"MAX_LR 0.01 → 0.02"``; empty when the run may resume from it as far as the settings
    tell (the resolved arithmetic is :func:`_precision_refusal`'s)."""
    saved = _with_new_defaults(saved, fingerprint)
    diff = []
    for k in sorted((set(saved) | set(fingerprint)) - {RESOLVED_PRECISION}):
        if k == "precision":
            if not _same_precision_setting(saved, fingerprint):
                diff.append(f"PRECISION {_precision_then(saved)} → {fingerprint.get(k)!r}")
        elif saved.get(k) != fingerprint.get(k):
            diff.append(f"{k.upper()} {saved.get(k)!r} → {fingerprint.get(k)!r}")
    return diff


def _same_precision_setting(saved: dict[str, Any], fingerprint: dict[str, Any]) -> bool:
    """Whether PRECISION allows the resume: what matters is the arithmetic, so where both
    fingerprints record the resolved one, only that counts (:func:`_precision_refusal`); where
    only the checkpoint does, the new setting must be ``auto`` (resolved later) or that very
    arithmetic; else the settings must match."""
    then, now = saved.get(RESOLVED_PRECISION), fingerprint.get(RESOLVED_PRECISION)
    if then is not None and now is not None:
        return True
    if then is not None:
        return fingerprint.get("precision") in ("auto", then)
    return saved.get("precision") == fingerprint.get("precision")


def _precision_then(saved: dict[str, Any]) -> str:
    """A checkpoint's PRECISION for a message, with what it resolved: ``'auto' (bf16)``."""
    setting, resolved = saved.get("precision"), saved.get(RESOLVED_PRECISION)
    return f"{setting!r}" + (f" ({resolved})" if resolved not in (None, setting) else "")


def _precision_refusal(
    output_dir: Path, saved: dict[str, Any], fingerprint: dict[str, Any]
) -> ConfigError | None:
    """The refusal (exit 2) of a checkpoint written in another arithmetic than this run
    resolves — PRECISION=auto gives bf16 on one machine and fp32 on another —, or None when
    they agree or either fingerprint predates the record of it: resuming would finish a bf16
    run in fp16, a recipe neither run asked for."""
    then, now = saved.get(RESOLVED_PRECISION), fingerprint.get(RESOLVED_PRECISION)
    if then is None or now is None or then == now:
        return None
    setting = fingerprint.get("precision")
    how = f"PRECISION={setting} on this device" if setting == "auto" else f"PRECISION={setting}"
    return ConfigError(
        f"{CHECKPOINT} in OUTPUT_DIR={str(output_dir)!r} was written in {then} and this run "
        f"resolves {now} ({how}): set PRECISION={then} to resume it here, or use another "
        "OUTPUT_DIR."
    )


def foreign(output_dir: Path, diff: list[str]) -> ConfigError:
    """The refusal of an unfinished run's checkpoint from another configuration: resuming it
    would mix two recipes in one model (docs/contract.md: one OUTPUT_DIR, one run)."""
    return ConfigError(
        f"OUTPUT_DIR={str(output_dir)!r} holds the checkpoint of an unfinished run of a "
        f"different configuration ({', '.join(diff)}); rerun with its settings to finish it, "
        f"use a new OUTPUT_DIR, or delete {CHECKPOINT} to start over."
    )


def check_model_info(output_dir: Path, state: dict[str, Any], info: ModelInfo) -> None:
    """Refuse (ConfigError, exit 2) to resume a checkpoint whose model has other classes or
    another normalisation than this run's data gives: the data changed under the same
    settings, and the weights would keep learning another task. A checkpoint saved before it
    recorded them holds a CIFAR-10 model (:func:`job.model.legacy_info`)."""
    from job.model import ModelInfo, class_summary, legacy_info

    saved = state.get("model_info")
    then = legacy_info(info.width) if saved is None else ModelInfo.from_json(saved)
    diff = []
    if then.classes != info.classes:
        diff.append(f"{class_summary(then.classes)} → {class_summary(info.classes)}")
    if (then.preprocess.mean, then.preprocess.std) != (info.preprocess.mean, info.preprocess.std):
        diff.append(
            f"normalisation mean {_rounded(then.preprocess.mean)}, std "
            f"{_rounded(then.preprocess.std)} → mean {_rounded(info.preprocess.mean)}, std "
            f"{_rounded(info.preprocess.std)}"
        )
    if diff:
        raise foreign(output_dir, [f"data: {d}" for d in diff])


def _rounded(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def _with_new_defaults(saved: dict[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
    """``saved`` plus the default of each variable it lacks: a checkpoint written before a
    variable existed trained with that variable's default, so it resumes unless the run sets
    another value."""
    from job.config import Config

    defaults = Config().fingerprint()
    added = {k: defaults[k] for k in fingerprint.keys() - saved.keys() if k in defaults}
    return {**saved, **added}
