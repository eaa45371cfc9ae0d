"""ResNet9 at any IMAGE_SIZE and class count, and model.pt: weights with what they expect."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from job.contract import EXPORTED_MODEL, MODEL
from job.data import CIFAR_CLASSES
from job.export import export
from job.model import ModelInfo, ResNet9, legacy_info, read_model, save_model
from job.preprocess import CIFAR10, Preprocess
from tests.job.test_checkpoint import lazy_device


def test_full_width_is_the_tutorials_resnet9() -> None:
    model = ResNet9(num_classes=10, width=1.0)
    assert sum(p.numel() for p in model.parameters()) == 6_575_370


@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_width_scales_parameters_down(width: float) -> None:
    small = sum(p.numel() for p in ResNet9(width=width).parameters())
    assert small < 6_575_370 * width  # channels scale, so parameters shrink ~quadratically


def _batch(n: int, size: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(size)
    x = torch.randn(n, 3, size, size, generator=gen)
    return x.contiguous(memory_format=torch.channels_last)


def test_at_32_pixels_the_adaptive_pool_is_the_tutorials_pool_of_4() -> None:
    torch.manual_seed(0)
    model = ResNet9(num_classes=10, width=0.25).eval()
    tutorial = copy.deepcopy(model)
    tutorial.classifier[0] = nn.MaxPool2d(4)  # the tutorial's head, for its 4 × 4 map at 32 px
    assert list(model.state_dict()) == list(tutorial.state_dict())
    with torch.inference_mode():
        assert torch.equal(model(_batch(4, 32)), tutorial(_batch(4, 32)))


@pytest.mark.parametrize("size", [32, 64, 96])
@pytest.mark.parametrize("classes", [2, 10, 37])
def test_forward_gives_one_logit_per_class_at_any_size(size: int, classes: int) -> None:
    model = ResNet9(num_classes=classes, width=0.125).eval()
    with torch.inference_mode():
        assert model(_batch(2, size)).shape == (2, classes)


# -- model.pt ------------------------------------------------------------------------------


def _info(size: int, classes: int) -> ModelInfo:
    names = tuple(f"class-{i:02d}" for i in range(classes))
    return ModelInfo(names, Preprocess(size, (0.61, 0.52, 0.40), (0.27, 0.22, 0.31)), 0.125)


@pytest.mark.parametrize(("size", "classes"), [(32, 10), (64, 2), (96, 37)])
def test_model_pt_carries_the_weights_classes_and_preprocessing(
    tmp_path: Path, size: int, classes: int
) -> None:
    info = _info(size, classes)
    model = info.build().eval()
    save_model(tmp_path / "model.pt", model, info)
    state, read = read_model(tmp_path / "model.pt")
    assert read == info
    rebuilt = info.build().eval()
    rebuilt.load_state_dict(state)  # strict: every key, every shape
    with torch.inference_mode():
        assert torch.equal(rebuilt(_batch(2, size)), model(_batch(2, size)))


def test_model_pt_loads_with_torch_alone(tmp_path: Path) -> None:
    info = _info(64, 2)
    save_model(tmp_path / "model.pt", info.build(), info)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert saved["classes"] == list(info.classes)
    assert saved["preprocess"] == {
        "size": 64,
        "mean": [0.61, 0.52, 0.40],
        "std": [0.27, 0.22, 0.31],
    }
    assert saved["model_width"] == 0.125
    ResNet9(len(saved["classes"]), saved["model_width"]).load_state_dict(saved["state_dict"])


def test_a_model_pt_from_before_is_a_bare_state_dict_read_as_cifar10(tmp_path: Path) -> None:
    torch.save(ResNet9(10, 0.25).state_dict(), tmp_path / "model.pt")  # how model.pt was written
    state, info = read_model(tmp_path / "model.pt")
    assert info is None and "classifier.3.weight" in state
    assert legacy_info(0.25) == ModelInfo(CIFAR_CLASSES, CIFAR10, 0.25)


@pytest.mark.parametrize(
    "content",
    [[1, 2, 3], {"state_dict": {}, "classes": ["a", "b"]}],
    ids=["not a dict", "incomplete"],
)
def test_a_model_pt_of_another_form_is_a_value_error(tmp_path: Path, content: object) -> None:
    torch.save(content, tmp_path / "model.pt")
    with pytest.raises(ValueError):
        read_model(tmp_path / "model.pt")


def test_a_model_trained_off_the_cpu_is_saved_and_exported_for_any_machine(
    tmp_path: Path,
) -> None:
    info = _info(32, 10)
    cpu_model = info.build().eval()
    model = copy.deepcopy(cpu_model).to(lazy_device())  # a real device other than the CPU
    export(model, info, tmp_path)
    saved = torch.load(tmp_path / MODEL, map_location=None, weights_only=True)
    state = saved["state_dict"]
    assert {t.device.type for t in state.values()} == {"cpu"}
    assert state._metadata == cpu_model.state_dict()._metadata  # what load_state_dict reads
    assert all(torch.equal(state[k], v) for k, v in cpu_model.state_dict().items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
        scripted = torch.jit.load(str(tmp_path / EXPORTED_MODEL), map_location=None)
    tensors = [*scripted.parameters(), *scripted.buffers()]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}
    assert next(model.parameters()).device.type == "lazy"  # the run's model is left as it was
