"""No figure: where every bench module reads and writes (the repository, the shared archive).

The one place that knows the layout around the checkout: ``tests/conftest.py`` and every bench
command take their defaults from here.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The repository root: the working folder of every job, search and pytest the bench starts."""
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10.tgz"
"""The real fast.ai CIFAR-10 archive, shared beside the checkout (never copied into it)."""
SUBSET = REPO / ".gl" / "cifar10-subset.tgz"
"""The real subset ``python -m bench.subset`` writes and the GPU campaign's search reads."""
OUTPUT = REPO / "output"
"""Where the bench commands that keep their results write them by default."""
