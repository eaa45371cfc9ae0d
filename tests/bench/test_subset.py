"""``python -m bench.subset``: seeded, class-balanced, original bytes, same layout."""

from __future__ import annotations

import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from bench.subset import SubsetError, plan, write_subset
from tests.bench.commands import run_module


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar
            if m.isfile()
        }


def _subset(*args: str) -> subprocess.CompletedProcess[str]:
    return run_module("bench.subset", *args, timeout=300)


@pytest.mark.parametrize(("n_train", "n_test"), [(100, 50), (105, 53)])
def test_counts_are_balanced_over_classes(
    archives: dict[str, Path], tmp_path: Path, n_train: int, n_test: int
) -> None:
    out = write_subset(archives["fastai"], tmp_path / "s.tgz", n_train, n_test)
    assert out
    names = list(_members(tmp_path / "s.tgz"))
    for split, n in (("train", n_train), ("test", n_test)):
        per_class = Counter(name.split("/")[2] for name in names if name.split("/")[1] == split)
        assert sum(per_class.values()) == n
        assert len(per_class) == 10
        assert max(per_class.values()) - min(per_class.values()) <= 1


def test_members_keep_the_layout_and_original_bytes(
    archives: dict[str, Path], tmp_path: Path
) -> None:
    write_subset(archives["fastai"], tmp_path / "s.tgz", 50, 20)
    source, subset = _members(archives["fastai"]), _members(tmp_path / "s.tgz")
    assert subset
    assert all(name.startswith(("cifar10/train/", "cifar10/test/")) for name in subset)
    assert all(subset[name] == source[name] for name in subset)


@pytest.mark.parametrize(("seed_a", "seed_b", "same"), [(0, 0, True), (0, 1, False)])
def test_seed_decides_the_output(
    archives: dict[str, Path], tmp_path: Path, seed_a: int, seed_b: int, same: bool
) -> None:
    a = write_subset(archives["fastai"], tmp_path / "a.tgz", 50, 20, seed=seed_a)
    b = write_subset(archives["fastai"], tmp_path / "b.tgz", 50, 20, seed=seed_b)
    assert (a == b) is same


def test_job_reads_the_subset(archives: dict[str, Path], tmp_path: Path) -> None:
    from job.config import from_env
    from job.data import load_dataset

    write_subset(archives["fastai"], tmp_path / "s.tgz", 60, 30)
    cfg = from_env({"DATA_URL": (tmp_path / "s.tgz").as_uri(), "DATA_DIR": str(tmp_path / "d")})
    data = load_dataset(cfg)
    assert (len(data.train_labels), len(data.test_labels)) == (60, 30)
    assert sorted(Counter(data.train_labels.tolist()).values()) == [6] * 10


def test_plan_refuses_more_than_a_class_holds() -> None:
    members = {"train": {"a": ["1.png", "2.png"], "b": ["3.png"]}, "test": {"a": ["4.png"]}}
    with pytest.raises(SubsetError, match="only 1"):
        plan(members, {"train": 4, "test": 1}, seed=0)


@pytest.mark.parametrize(
    ("archive", "args", "message"),
    [
        ("missing", ["--train", "10", "--test", "10"], "no archive at"),
        ("fastai", ["--train", "1000", "--test", "10"], "needs 100 images of class"),
        ("python", ["--train", "10", "--test", "10"], "no cifar10/train"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    archives: dict[str, Path], tmp_path: Path, archive: str, args: list[str], message: str
) -> None:
    source = archives.get(archive, tmp_path / "missing.tgz")
    out = tmp_path / "s.tgz"
    proc = _subset("--archive", str(source), "--out", str(out), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".s.tgz.part"))
