"""Digests recomputed only when a file's stamp changed (job/digest.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from job import digest


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record stamps at once: a test cannot wait for a change to be RACY_NS old."""
    monkeypatch.setattr(digest, "RACY_NS", -(10**18))


def _file(tmp_path: Path, content: bytes = b"cifar" * 1000) -> Path:
    path = tmp_path / "archive.tgz"
    path.write_bytes(content)
    return path


def _computations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []
    real = digest.sha256_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(digest, "sha256_file", counting)
    return calls


def test_the_digest_is_the_files_sha256(tmp_path: Path, settled: None) -> None:
    path = _file(tmp_path)
    assert digest.sha256(path, tmp_path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_unchanged_file_is_hashed_once(tmp_path, settled, monkeypatch) -> None:
    path = _file(tmp_path)
    calls = _computations(monkeypatch)
    first = digest.sha256(path, tmp_path)
    assert [digest.sha256(path, tmp_path) for _ in range(3)] == [first] * 3
    assert len(calls) == 1


def _rewrite_in_place(path: Path, content: bytes) -> None:
    # Same inode, same size, mtime put back: only the kernel-set ctime can tell.
    st = path.stat()
    with path.open("r+b") as f:
        f.write(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replace(path: Path, content: bytes) -> None:
    # Another inode with the same size and mtime.
    st = path.stat()
    other = path.with_name("other")
    other.write_bytes(content)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, path)


@pytest.mark.parametrize("change", [_rewrite_in_place, _replace], ids=["in-place", "replaced"])
def test_a_changed_file_is_hashed_again_even_with_its_size_and_mtime(
    tmp_path, settled, change
) -> None:
    path = _file(tmp_path, b"a" * 5000)
    before = digest.sha256(path, tmp_path)
    change(path, b"b" * 5000)
    after = digest.sha256(path, tmp_path)
    assert after != before and after == digest.sha256_file(path)


def test_a_recent_change_is_not_recorded(tmp_path, monkeypatch) -> None:
    path = _file(tmp_path)  # just written: within RACY_NS of now
    calls = _computations(monkeypatch)
    digest.sha256(path, tmp_path)
    digest.sha256(path, tmp_path)
    assert len(calls) == 2
    assert not (tmp_path / digest.MEMO).exists()


@pytest.mark.parametrize("memo", ["not json", "[1, 2]", '{"x": 1}'])
def test_an_unreadable_memo_only_costs_the_computation(tmp_path, settled, memo) -> None:
    path = _file(tmp_path)
    (tmp_path / digest.MEMO).write_text(memo)
    assert digest.sha256(path, tmp_path) == digest.sha256_file(path)


def test_a_forged_record_with_another_stamp_is_ignored(tmp_path, settled) -> None:
    path = _file(tmp_path)
    stamp = digest.stamp(path)
    stamp[4] -= 1  # the ctime of an earlier version
    record = {str(path.resolve()): {"stamp": stamp, "sha256": "0" * 64}}
    (tmp_path / digest.MEMO).write_text(json.dumps(record))
    assert digest.sha256(path, tmp_path) == digest.sha256_file(path)


def test_records_of_removed_files_are_dropped(tmp_path, settled) -> None:
    gone, kept = _file(tmp_path), tmp_path / "kept"
    kept.write_bytes(b"kept")
    digest.sha256(gone, tmp_path)
    gone.unlink()
    digest.sha256(kept, tmp_path)
    assert list(json.loads((tmp_path / digest.MEMO).read_text())) == [str(kept.resolve())]


# --- the cache's arrays -----------------------------------------------------------------------
