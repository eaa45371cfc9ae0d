"""The predictor (job/predict.py) on real trained runs: it decodes image files as training did,
at the model's own size, and reads every format training reads."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from job.contract import CLASSES_JSON, EXPORTED_MODEL
from job.data.images import decode
from job.predict import PredictExit
from tests.conftest import REPO
from tests.job.trained import Trained, shared

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # real CIFAR-10 pictures, trained on

_RUNS = ["cifar-32px-10", "jpeg-96px-37"]
_FOLDER_RUN = "jpeg-96px-37"


def _trained(name: str, archives, real_cifar, tmp_path_factory) -> Trained:
    return shared(name, archives, real_cifar, tmp_path_factory)


@pytest.fixture(scope="module", params=_RUNS)
def trained(request, archives, real_cifar, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _trained(request.param, archives, real_cifar, tmp_path_factory)


@pytest.fixture(scope="module")
def folder_run(archives, real_cifar, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The run on 37 classes of JPEG pictures at 96 px."""
    return _trained(_FOLDER_RUN, archives, real_cifar, tmp_path_factory)


def _predict(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job.predict", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    assert proc.returncode == PredictExit.DONE, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def _image_file(
    trained: Trained, tmp: Path, index: int, fmt: str, size: tuple[int, int], mode: str = "RGB"
) -> Path:
    """Test image ``index`` of the run, scaled (bicubic) to ``size``, in colour ``mode``,
    saved as ``fmt``."""
    pixels = trained.images[index].permute(1, 2, 0).contiguous().numpy()
    image = Image.fromarray(pixels).resize(size, Image.Resampling.BICUBIC).convert(mode)
    path = tmp / f"image-{index}-{mode}.{fmt.lower()}"
    image.save(path, format=fmt)
    return path


def _model_says(trained: Trained, path: Path) -> int:
    """The class the exported model gives ``path`` decoded as training decodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
        model = torch.jit.load(str(trained.output / EXPORTED_MODEL))
    with torch.inference_mode():
        return int(model(torch.from_numpy(decode(path, trained.size).copy())).argmax())


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
        _image_file(trained, tmp_path, 0, "PNG", (trained.size, trained.size)),
        _image_file(trained, tmp_path, 1, "JPEG", (200, 120)),
    ]
    lines = _lines(_predict("--top", 2, folder, *images))
    classes = json.loads((trained.output / CLASSES_JSON).read_text())
    assert [line["image"] for line in lines] == [str(p) for p in images]
    for line in lines:
        probs = [t["probability"] for t in line["top"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6
        assert all(classes[t["index"]] == t["class"] for t in line["top"])


def test_predict_on_the_runs_own_test_pictures_reaches_its_val_acc(folder_run: Trained) -> None:
    assert folder_run.pictures is not None
    classes = json.loads((folder_run.output / CLASSES_JSON).read_text())
    files = sorted((folder_run.pictures / "test").glob("*/*.jpg"))
    assert len(files) == len(folder_run.labels)  # the whole test split
    lines = _lines(_predict("--top", 1, folder_run.output, *files))
    right = [line["top"][0]["class"] == Path(line["image"]).parent.name for line in lines]
    assert sum(right) / len(right) == folder_run.val_acc  # the very pixels evaluation saw
    assert {Path(line["image"]).parent.name for line in lines} == set(classes)


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("PNG", "RGB"), ("JPEG", "L"), ("WEBP", "RGB"), ("BMP", "RGB"), ("GIF", "P"), ("PNG", "RGBA")],
)
def test_predict_reads_every_format_training_reads(
    tmp_path: Path, trained: Trained, fmt: str, mode: str
) -> None:
    path = _image_file(trained, tmp_path, 2, fmt, (150, 90), mode)
    (line,) = _lines(_predict("--top", 1, trained.output, path))
    assert line["top"][0]["index"] == _model_says(trained, path)


def test_predict_decodes_at_the_models_size(tmp_path: Path, trained: Trained) -> None:
    path = _image_file(trained, tmp_path, 0, "PNG", (trained.size, trained.size))
    (line,) = _lines(_predict("--top", 1, trained.output, path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(trained.output / EXPORTED_MODEL))
    with torch.inference_mode():  # a file at the model's size is its pixels, unresized
        assert line["top"][0]["index"] == model(trained.images[:1]).argmax(dim=1).item()


def test_a_model_exported_before_it_recorded_its_size_is_fed_32_pixels(tmp_path: Path) -> None:
    class Old(torch.nn.Module):
        """An exported model without ``image_size``: it fails unless given 32 × 32 pixels."""

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            assert images.shape[1:] == (32, 32, 3)
            return torch.stack([images.float().mean((1, 2, 3)), torch.zeros(len(images))], 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Old()), str(tmp_path / EXPORTED_MODEL))
    (tmp_path / CLASSES_JSON).write_text(json.dumps(["bright", "dark"]))
    picture = tmp_path / "white.png"
    Image.new("RGB", (100, 70), "white").save(picture)
    (line,) = _lines(_predict("--top", 1, tmp_path, picture))
    assert line["top"][0]["class"] == "bright"


def _truncated_jpeg(tmp: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, format="JPEG")
    (tmp / "cut.jpg").write_bytes(buf.getvalue()[:100])
    return tmp / "cut.jpg"


@pytest.mark.parametrize(
    ("make", "code", "words"),
    [
        (lambda tmp: tmp / "missing.png", PredictExit.NO_IMAGE, "does not exist or is not a file"),
        (lambda tmp: tmp, PredictExit.NO_IMAGE, "does not exist or is not a file"),
        (
            lambda tmp: (tmp / "notes.png").write_text("not an image") and tmp / "notes.png",
            PredictExit.BAD_IMAGE,
            "cannot be used: not a PNG, JPEG, WebP, BMP or GIF image",
        ),
        (_truncated_jpeg, PredictExit.BAD_IMAGE, "cannot be used: not a readable image"),
    ],
    ids=["missing", "folder", "text", "truncated"],
)
def test_a_bad_image_is_one_sentence_and_its_code(
    tmp_path: Path, trained: Trained, make, code: PredictExit, words: str
) -> None:
    good = _image_file(trained, tmp_path, 0, "PNG", (32, 32))
    proc = _predict(trained.output, good, make(tmp_path))
    assert proc.returncode == code
    assert proc.stdout == ""  # nothing half-written: the good image is not reported either
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_a_bad_model_folder_is_one_sentence_and_exit_2(
    tmp_path: Path, trained: Trained, folder: str
) -> None:
    (tmp_path / "empty").mkdir()
    proc = _predict(tmp_path / folder, _image_file(trained, tmp_path, 0, "PNG", (32, 32)))
    assert proc.returncode == PredictExit.BAD_MODEL
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_missing_model_folder_is_told_before_a_missing_image(tmp_path: Path) -> None:
    proc = _predict(tmp_path / "missing", tmp_path / "missing.png")
    assert proc.returncode == PredictExit.BAD_MODEL
    assert "The model folder" in proc.stderr
