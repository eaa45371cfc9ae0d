"""CUDA tests (marker ``gpu``): run on a GPU machine with ``pytest -m gpu tests/gpu``.

Without a CUDA device every test here skips with the reason (``pytest.skip``, not
``tests.conftest.need``: CI has no GPU and deselects the marker; a GPU campaign runs them).
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def cuda() -> torch.device:
    """The first CUDA device; skips the test when there is none."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False")
    return torch.device("cuda")
