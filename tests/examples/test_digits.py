"""examples/digits.py, run as a user runs it: scikit-learn's digits written as class folders of
PNGs, left alone when already written, refused over other files, and the reference scored on
the test images the job holds out. Skips (fails under RESNET_JOB_REQUIRE_ALL=1) without
scikit-learn, which the ``examples`` extra installs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, need

SCRIPT = REPO / "examples" / "digits.py"
HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def digits():
    need(HAVE_SKLEARN, "scikit-learn is not installed (pip install -e '.[examples]')")
    from sklearn.datasets import load_digits

    return load_digits()


@pytest.fixture(scope="module")
def written(digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("example") / "digits"
    result = _run(str(folder))
    assert result.returncode == 0, result.stderr
    return folder


def test_every_digit_is_a_png_in_its_class_folder(digits, written: Path) -> None:
    counts = Counter(p.parent.name for p in written.glob("*/*.png"))
    assert counts == Counter(str(label) for label in digits.target)
    assert sorted(p.name for p in written.iterdir()) == [str(d) for d in range(10)]


@pytest.mark.parametrize("index", [0, 1, 1796])
def test_a_png_holds_the_digit_at_full_8_bit_range(digits, written: Path, index: int) -> None:
    with Image.open(written / str(digits.target[index]) / f"{index:04d}.png") as image:
        assert (image.mode, image.size) == ("L", (8, 8))
        pixels = np.asarray(image)
    assert np.array_equal(pixels, np.rint(digits.images[index] * 255 / 16).astype(np.uint8))


def test_a_second_run_leaves_the_folder_as_it_is(written: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in written.rglob("*")}
    result = _run(str(written))
    assert result.returncode == 0, result.stderr
    assert "left as it is" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in written.rglob("*")} == before


def test_a_folder_with_other_files_is_refused_and_kept(digits, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    result = _run(str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "holds other files" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.fixture(scope="module")
def reference(written: Path) -> str:
    result = _run(str(written), "--reference", "--test-fraction", "0.2")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_reference_is_tested_on_the_jobs_held_out_share(digits, reference: str) -> None:
    # The job holds out round(0.2 × n) of each class's n images.
    held = sum(round(0.2 * n) for n in Counter(digits.target).values())
    assert f"{len(digits.target) - held} training and {held} test images" in reference


@pytest.mark.parametrize("name", ["logistic regression", "SVM (RBF kernel)"])
def test_each_reference_scores_well_above_chance(reference: str, name: str) -> None:
    (line,) = [line for line in reference.splitlines() if name in line]
    assert 0.9 < float(line.rsplit(" ", 1)[1]) <= 1.0


def test_without_scikit_learn_it_says_how_to_install_it(tmp_path: Path) -> None:
    # A package named sklearn that cannot be imported stands for a missing scikit-learn.
    (tmp_path / "sklearn").mkdir()
    (tmp_path / "sklearn" / "__init__.py").write_text("raise ImportError('no sklearn here')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)}
    result = _run(str(tmp_path / "digits"), env=env)
    assert result.returncode == 2
    assert "pip install -e '.[examples]'" in result.stderr
    assert not (tmp_path / "digits").exists()
