"""The exported model (job/export.py) on real trained runs — CIFAR-10 at 32 pixels, and folders
of real pictures at 64 and 96 pixels with 2 and 37 classes: loaded by a fresh interpreter that
has torch and not this project, with its own preprocessing inside."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from job.contract import CLASSES_JSON, EXPORTED_MODEL, MODEL
from job.model import read_model
from tests.job.fresh import fresh_accuracy
from tests.job.trained import RUNS, Trained, shared

pytestmark = [pytest.mark.realdata, pytest.mark.slow]  # real CIFAR-10 pictures, trained on


@pytest.fixture(scope="module", params=list(RUNS))
def trained(request, archives, real_cifar, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return shared(request.param, archives, real_cifar, tmp_path_factory)


def _load(trained: Trained) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
        return torch.jit.load(str(trained.output / EXPORTED_MODEL))


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


def test_the_exported_model_gives_one_logit_per_class(trained: Trained) -> None:
    with torch.inference_mode():
        logits = _load(trained)(trained.images[:3])
    assert logits.shape == (3, trained.classes)


def test_the_exported_model_carries_the_preprocessing_and_classes_of_model_pt(
    trained: Trained,
) -> None:
    module = _load(trained)
    _, info = read_model(trained.output / MODEL)
    assert info is not None and info.preprocess.size == trained.size
    assert module.image_size == info.preprocess.size
    assert tuple(module.mean) == info.preprocess.mean and tuple(module.std) == info.preprocess.std
    assert tuple(module.classes) == info.classes
    assert json.loads((trained.output / CLASSES_JSON).read_text()) == list(info.classes)


def test_the_exported_model_refuses_another_size_in_one_sentence(trained: Trained) -> None:
    other = torch.zeros(1, 3, trained.size + 8, trained.size + 8, dtype=torch.uint8)
    with pytest.raises(Exception, match=rf"takes images of {trained.size} × {trained.size} pixels"):
        _load(trained)(other)


def test_classes_json_names_the_classes_in_output_order(trained: Trained) -> None:
    classes = json.loads((trained.output / CLASSES_JSON).read_text())
    assert len(classes) == len(set(classes)) == trained.classes and classes == sorted(classes)


@pytest.mark.parametrize("name", [EXPORTED_MODEL, CLASSES_JSON, MODEL])
def test_the_champion_carries_the_model_files(trained: Trained, name: str) -> None:
    champion = trained.promote_dir / "champion" / name
    assert champion.read_bytes() == (trained.output / name).read_bytes()
