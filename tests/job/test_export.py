"""The exported model (job/export.py) and the predictor (job/predict.py), on a real trained run:
loaded by a fresh interpreter that has torch and not this project, and run on image files."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from job.contract import CLASSES_JSON, EXPORTED_MODEL
from job.predict import PredictExit
from tests.conftest import REPO, job_env, run_job
from tests.job.fresh import fresh_accuracy


@dataclass(frozen=True)
class Trained:
    output: Path
    promote_dir: Path
    images: torch.Tensor  # the run's own test images, uint8 NCHW
    labels: torch.Tensor
    val_acc: float


@pytest.fixture(scope="module")
def trained(archives: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One real run (fp32 on the CPU) promoted to a PROMOTE_DIR, and its test images."""
    from job.config import from_env
    from job.data import load_dataset

    tmp = tmp_path_factory.mktemp("trained")
    env = job_env(
        tmp,
        DATA_URL=archives["python"].as_uri(),
        PRECISION="fp32",
        TEST_LIMIT=150,
        PROMOTE_DIR=tmp / "promote",
    )
    result = run_job(env)
    assert result.code == 0, result.stderr
    data = load_dataset(from_env(env))  # the same variables: the same test subset
    val_acc = json.loads((tmp / "output" / "metrics.json").read_text())["val_acc"]
    return Trained(tmp / "output", tmp / "promote", data.test_images, data.test_labels, val_acc)


# -- the exported model in a fresh interpreter ----------------------------------------------


def _fresh_accuracy(tmp: Path, trained: Trained, form: str) -> float:
    model = trained.output / EXPORTED_MODEL
    return fresh_accuracy(tmp, model, trained.images, trained.labels, form)


def test_the_exported_model_reaches_the_runs_val_acc_without_this_project(
    tmp_path: Path, trained: Trained
) -> None:
    assert _fresh_accuracy(tmp_path, trained, "uint8") == trained.val_acc


@pytest.mark.parametrize("form", ["float", "channels_last"])
def test_float_and_channels_last_images_give_the_same_accuracy(
    tmp_path: Path, trained: Trained, form: str
) -> None:
    assert _fresh_accuracy(tmp_path, trained, form) == pytest.approx(trained.val_acc, abs=0.01)


def test_classes_json_names_the_classes_in_output_order(trained: Trained) -> None:
    classes = json.loads((trained.output / CLASSES_JSON).read_text())
    assert len(classes) == 10 and len(set(classes)) == 10 and classes == sorted(classes)


@pytest.mark.parametrize("name", [EXPORTED_MODEL, CLASSES_JSON])
def test_the_champion_carries_the_exported_model(trained: Trained, name: str) -> None:
    champion = trained.promote_dir / "champion" / name
    assert champion.read_bytes() == (trained.output / name).read_bytes()


# -- the predictor ---------------------------------------------------------------------------


def _predict(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job.predict", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _image_file(
    trained: Trained, tmp: Path, index: int, suffix: str, size: tuple[int, int]
) -> Path:
    """Test image ``index`` of the run, scaled to ``size`` and saved as PNG or JPEG."""
    pixels = trained.images[index].permute(1, 2, 0).contiguous().numpy()
    path = tmp / f"image-{index}{suffix}"
    Image.fromarray(pixels).resize(size, Image.Resampling.NEAREST).save(path)
    return path


@pytest.mark.parametrize("model", ["output", "promote_dir", "champion"])
def test_predict_prints_one_line_per_image_with_the_top_classes(
    tmp_path: Path, trained: Trained, model: str
) -> None:
    folder = {
        "output": trained.output,
        "promote_dir": trained.promote_dir,
        "champion": trained.promote_dir / "champion",
    }[model]
    images = [
        _image_file(trained, tmp_path, 0, ".png", (32, 32)),
        _image_file(trained, tmp_path, 1, ".jpg", (200, 120)),
    ]
    proc = _predict("--top", 2, folder, *images)
    assert proc.returncode == PredictExit.DONE, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    classes = json.loads((trained.output / CLASSES_JSON).read_text())
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line in lines:
        probs = [t["probability"] for t in line["top"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert all(classes[t["index"]] == t["class"] for t in line["top"])


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch 2.14 deprecates torch.jit
def test_predict_agrees_with_the_model_on_a_32_pixel_png(tmp_path: Path, trained: Trained) -> None:
    model = torch.jit.load(str(trained.output / EXPORTED_MODEL))
    with torch.inference_mode():
        expected = model(trained.images[:1]).argmax(dim=1).item()
    proc = _predict(trained.output, _image_file(trained, tmp_path, 0, ".png", (32, 32)))
    assert json.loads(proc.stdout)["top"][0]["index"] == expected


def _gif(tmp: Path) -> Path:
    Image.new("RGB", (8, 8)).save(tmp / "a.gif")
    return tmp / "a.gif"


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda tmp: tmp / "missing.png", PredictExit.NO_IMAGE, "does not exist or is not a file"),
        (lambda tmp: tmp, PredictExit.NO_IMAGE, "does not exist or is not a file"),
        (
            lambda tmp: (tmp / "notes.png").write_text("not an image") and tmp / "notes.png",
            PredictExit.BAD_IMAGE,
            "cannot be read as PNG or JPEG",
        ),
        (_gif, PredictExit.BAD_IMAGE, "is GIF, not PNG or JPEG"),
    ],
    ids=["missing", "folder", "text", "gif"],
)
def test_a_bad_image_is_one_sentence_and_its_code(
    tmp_path: Path, trained: Trained, make, code: PredictExit, words: str
) -> None:
    good = _image_file(trained, tmp_path, 0, ".png", (32, 32))
    proc = _predict(trained.output, good, make(tmp_path))
    assert proc.returncode == code
    assert proc.stdout == ""  # nothing half-written: the good image is not reported either
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_a_bad_model_folder_is_one_sentence_and_exit_2(
    tmp_path: Path, trained: Trained, folder: str
) -> None:
    (tmp_path / "empty").mkdir()
    proc = _predict(tmp_path / folder, _image_file(trained, tmp_path, 0, ".png", (32, 32)))
    assert proc.returncode == PredictExit.BAD_MODEL
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_missing_model_folder_is_told_before_a_missing_image(tmp_path: Path) -> None:
    proc = _predict(tmp_path / "missing", tmp_path / "missing.png")
    assert proc.returncode == PredictExit.BAD_MODEL
    assert "The model folder" in proc.stderr
