"""What each start-up shortcut of ``job/shortcuts.py`` saves: "Start-up shortcuts" in
docs/benchmarks.md (``python -m bench.shortcuts``).

Each figure is the median of ``--repeat`` fresh interpreters, measured with the shortcut and
with the plain library call it replaces, side by side in one run:

- optimizer: building an Adam and its first ``step`` + ``zero_grad`` + ``state_dict``, torch
  already imported (torch's wrappers import ``torch._dynamo`` on the first wrapped call);
- cache: opening a decoded-cache-sized ``.npz`` (50,000 + 10,000 images) and reading a
  5,000-image subset — numpy's ``np.load`` reads each member whole, the shortcut maps it;
- exit: from the last line of a run that imported torch and trained one step to the process's
  end: ``sys.exit`` (the interpreter's teardown) against ``exit_now``.

Warm rows only: the files are in the page cache and torch's modules on disk are cached.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from job.files import write_json

_OPTIMIZER = """
import time, torch
from job.shortcuts import eager_optimizer_class
model = torch.nn.Linear(64, 10)
model(torch.randn(8, 64)).sum().backward()
t0 = time.perf_counter()
cls = eager_optimizer_class(torch.optim.Adam) if {shortcut} else torch.optim.Adam
opt = cls(model.parameters(), lr=0.01)
opt.step(); opt.zero_grad(); opt.state_dict()
print(time.perf_counter() - t0)
"""

_CACHE = """
import time, numpy as np
from pathlib import Path
from job.shortcuts import npz_arrays
t0 = time.perf_counter()
path = Path({path!r})
if {shortcut}:
    arrays = npz_arrays(path)
else:
    with np.load(path) as f:
        arrays = {{k: f[k] for k in f.files}}
subset = np.array(arrays["train_images"][::10])
print(time.perf_counter() - t0)
"""

_EXIT = """
import sys, time, torch
from job.shortcuts import exit_now
model = torch.nn.Conv2d(3, 8, 3)
model(torch.randn(2, 3, 32, 32)).sum().backward()
print(time.time(), flush=True)
exit_now(0) if {shortcut} else sys.exit(0)
"""


def _seconds(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    ).stdout
    return float(out.split()[-1])


def _exit_seconds(code: str) -> float:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = float(proc.stdout.readline())
    proc.wait(timeout=600)
    return time.time() - last


def _median(measure: Callable[[str], float], code: str, repeat: int) -> float:
    return statistics.median(measure(code) for _ in range(repeat))


def _write_cache(path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(
        path,
        train_images=rng.integers(0, 256, (50_000, 3, 32, 32), dtype=np.uint8),
        train_labels=rng.integers(0, 10, 50_000),
        test_images=rng.integers(0, 256, (10_000, 3, 32, 32), dtype=np.uint8),
        test_labels=rng.integers(0, 10, 10_000),
    )


def _row(figure: str, plain: float, shortcut: float) -> dict[str, float | str]:
    return {"figure": figure, "plain": plain, "shortcut": shortcut, "saved": plain - shortcut}


def measure(repeat: int) -> list[dict[str, float | str]]:
    """The three shortcuts' rows, each with the plain call beside it (seconds)."""
    rows = []
    for figure, measure_one, code in (
        ("optimizer: first step, s", _seconds, _OPTIMIZER),
        ("exit after the last output, s", _exit_seconds, _EXIT),
    ):
        plain = _median(measure_one, code.format(shortcut=False), repeat)
        short = _median(measure_one, code.format(shortcut=True), repeat)
        rows.append(_row(figure, plain, short))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cache.npz"
        _write_cache(path)
        _seconds(_CACHE.format(path=str(path), shortcut=False))  # into the page cache
        codes = {s: _CACHE.format(path=str(path), shortcut=s) for s in (False, True)}
        plain, short = (_median(_seconds, codes[s], repeat) for s in (False, True))
        rows.append(_row("cache: open + 5,000-image subset, s", plain, short))
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.shortcuts [--repeat N] [--json FILE]``."""
    p = argparse.ArgumentParser(prog="python -m bench.shortcuts", description=__doc__)
    p.add_argument("--repeat", type=int, default=5, help="fresh interpreters per figure")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    rows = measure(args.repeat)
    print(f"{'figure':<40} {'plain':>8} {'shortcut':>9} {'saved':>8}")
    for r in rows:
        print(f"{r['figure']:<40} {r['plain']:>8.3f} {r['shortcut']:>9.3f} {r['saved']:>8.3f}")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
