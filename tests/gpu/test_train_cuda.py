"""Training on CUDA: bf16 autocast steps, the job's precision choice, a whole run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from job.config import from_env, resolve_precision
from job.loader import DeviceLoader
from job.model import ResNet9
from tests.conftest import job_env, run_job

pytestmark = pytest.mark.gpu


def _batch(device: torch.device, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 10
    return next(iter(DeviceLoader(images, labels, n, train=True, device=device).epoch()))


def test_bf16_autocast_step_computes_in_bf16_and_updates_fp32_weights(cuda) -> None:
    torch.manual_seed(0)
    model = ResNet9(10, 0.25).to(cuda).to(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    images, labels = _batch(cuda)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
    loss.backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 0.1)
    optimizer.step()
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 and p.grad is not None for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(("setting", "expected"), [("auto", "bf16"), ("fp32", "fp32")])
def test_precision_on_cuda(cuda, setting: str, expected: str) -> None:
    cfg = from_env({"DEVICE": "cuda", "PRECISION": setting})
    assert resolve_precision(cfg, cuda) == expected


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_job_trains_on_cuda(
    cuda, archives: dict[str, Path], tmp_path: Path, precision: str
) -> None:
    url = archives["fastai"].as_uri()
    env = job_env(tmp_path, DEVICE="cuda", PRECISION=precision, DATA_URL=url)
    result = run_job(env)
    assert result.code == 0, result.stderr
    config = json.loads((tmp_path / "output" / "config.json").read_text())
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert config["resolved_device"] == "cuda"
    assert config["resolved_precision"] == ("bf16" if precision == "auto" else precision)
    assert metrics["device_name"] == torch.cuda.get_device_name(0)
    assert all(e["train_loss"] == e["train_loss"] for e in result.of("epoch"))  # not NaN
