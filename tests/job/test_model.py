import pytest
import torch

from job.model import ResNet9


def test_full_width_is_the_tutorials_resnet9() -> None:
    model = ResNet9(num_classes=10, width=1.0)
    assert sum(p.numel() for p in model.parameters()) == 6_575_370


@pytest.mark.parametrize("width", [0.125, 0.25, 0.5])
def test_width_scales_parameters_down(width: float) -> None:
    small = sum(p.numel() for p in ResNet9(width=width).parameters())
    assert small < 6_575_370 * width  # channels scale, so parameters shrink ~quadratically


@pytest.mark.parametrize(("width", "classes"), [(0.125, 10), (0.25, 3)])
def test_forward_gives_one_logit_per_class(width: float, classes: int) -> None:
    model = ResNet9(num_classes=classes, width=width).eval()
    out = model(torch.zeros(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, classes)
