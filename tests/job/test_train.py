"""The training loop's optimizer (job/train.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from job.train import optimizer_class
from tests.conftest import REPO


def _train(opt_cls: type[torch.optim.Optimizer], steps: int = 5) -> tuple[dict, dict]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = opt_cls(model.parameters(), lr=0.01, weight_decay=1e-4)
    data, target = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(steps):
        torch.nn.functional.cross_entropy(model(data), target).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.state_dict(), opt.state_dict()


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize(("name", "stock"), [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_eager_optimizer_computes_what_torchs_does(name: str, stock: type) -> None:
    assert _equal(_train(optimizer_class(name, compiled=False)), _train(stock))


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_eager_optimizer_state_loads_into_torchs(name: str) -> None:
    _, state = _train(optimizer_class(name, compiled=False))
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    stock = torch.optim.Adam if name == "adam" else torch.optim.SGD
    opt = stock(model.parameters(), lr=0.01, weight_decay=1e-4)
    opt.load_state_dict(state)
    assert _equal(opt.state_dict(), state)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_compiled_runs_keep_torchs_optimizer(name: str) -> None:
    assert optimizer_class(name, compiled=True) in (torch.optim.Adam, torch.optim.SGD)


_NO_DYNAMO = """
import sys
import torch
from job.train import optimizer_class
COMPILED = False
model = torch.nn.Linear(4, 2)
opt = optimizer_class("adam", compiled=COMPILED)(model.parameters(), lr=0.1)
model(torch.randn(3, 4)).sum().backward()
opt.step()
opt.zero_grad()
opt.load_state_dict(opt.state_dict())
assert "torch._dynamo" not in sys.modules, "torch._dynamo was imported"
"""


def test_an_eager_optimizer_never_imports_dynamo() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _NO_DYNAMO], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
